"""Text classification: padding share with and without length bucketing, and the generated
loop's tokens/s against a bare PyTorch loop with the same model, collate_fn and batches.

Renders the text project (task=text_classification, all options), builds each case exactly as
a real run does (`training.fit.build_training`), then
1. counts the padding of one epoch's training batches with the generated sampler (length
   bucketing, the default) and with `--no-bucketing` (a seeded shuffle), on the embedded
   languages data and on a real corpus of longer texts: the docstrings of Django's source,
   labelled by subpackage (written to a CSV and read with `--dataset text_files`);
2. times one training epoch of the generated `train_one_epoch` and of a bare loop (to(device),
   forward, loss, backward, step, zero_grad) over the same DataLoader, in interleaved rounds,
   for each text model, and prints the median tokens/s and their ratio.

    .venv/bin/python benchmarks/text_loop.py            # full run
    .venv/bin/python benchmarks/text_loop.py --quick    # smoke run
"""

import argparse
import ast
import copy
import csv
import itertools
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from rendered_project import ROOT, build_training, import_project, machine_line, render_project
from torch import nn

SCRATCH = ROOT / ".scratch" / "benchmarks" / "text"
PROJECT_MODULES = ("config.extras", "config.parser", "loggers", "training.loop")
PROJECT_MODULES += ("training.optimisation", "runs.runtime", "training.fit", "data.bucketing")
MODELS = ("bag_of_embeddings", "bigru", "transformer")
CORPUS_PACKAGES = ("contrib", "core", "db", "forms", "template", "test", "utils", "views")
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
LOOP_BAR = 0.95
PADDING_BAR = 10.0  # per cent, with bucketing


def django_docstrings() -> list[tuple[str, str]]:
    """(docstring, subpackage) for the modules, classes and functions of Django's source in its
    CORPUS_PACKAGES: real text of many lengths, shipped inside an installed package."""
    import django

    root = Path(django.__file__).parent
    rows, seen = [], set()
    for path in sorted(root.rglob("*.py")):
        package = path.relative_to(root).parts[0]
        if package not in CORPUS_PACKAGES or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, DOCUMENTED):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40 and doc not in seen:
                    seen.add(doc)
                    rows.append((doc, package))
    return rows


def write_corpus() -> str:
    path = SCRATCH / "django_docstrings.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(django_docstrings())
    return str(path)


DATA = {
    "languages (embedded)": [],
    "Django docstrings": [
        "--dataset",
        "text_files",
        "--data-dir",
        "CORPUS",
        "--vocab-size",
        "8000",
    ],
}


def case_argv(data: list[str], corpus: str, model: str, *flags: str) -> list[str]:
    data = [corpus if value == "CORPUS" else value for value in data]
    output = ["--output-dir", str(SCRATCH / "runs"), "--device", "cpu", "--epochs", "50"]
    return [*data, "--model", model, *output, *flags]


def padding_rows(project: dict, corpus: str) -> list[tuple]:
    share = project["data.bucketing"].padding_share
    rows = []
    for data_name, data in DATA.items():
        for sampler, flags in (("length-bucketed", ()), ("shuffled", ("--no-bucketing",))):
            _, training, _ = build_training(project, case_argv(data, corpus, MODELS[0], *flags))
            sampler_object = training.train_loader.sampler
            sampler_object.set_epoch(0)
            keys = [index for index, _ in sampler_object]
            batch = training.train_loader.batch_size
            batches = [keys[start : start + batch] for start in range(0, len(keys), batch)]
            lengths = torch.tensor(training.train_loader.dataset.dataset.lengths)
            mean = float(lengths.float().mean())
            rows.append((data_name, sampler, len(keys), mean, 100 * share(batches, lengths)))
    return rows


def bare_loop(model: nn.Module, project: dict, config, loader):
    optimizer = project["training.optimisation"].build_optimizer(model, config.optim)
    loss_fn = nn.CrossEntropyLoss()

    epochs = itertools.count()

    def run_epoch() -> None:
        loader.sampler.set_epoch(next(epochs))  # as every loop must: a new order each epoch
        model.train()
        for inputs, targets in loader:
            inputs = {key: value.to("cpu") for key, value in inputs.items()}
            loss = loss_fn(model(inputs), targets.to("cpu"))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    return run_epoch


def generated_loop(project: dict, config, training, runtime):
    project["config.extras"].load_implementations()
    run_dir = SCRATCH / "runs" / "generated"
    run_dir.mkdir(parents=True, exist_ok=True)
    loggers = project["loggers"].build_loggers(config, run_dir, training.spec, None)

    def run_epoch() -> None:
        training.train_loader.sampler.set_epoch(training.progress.epoch)
        project["training.loop"].train_one_epoch(
            training.model,
            training.train_loader,
            training,
            runtime,
            config.run.log_every,
            loggers.log_step,
            show_progress=True,  # a run on a terminal shows its bar unless --no-progress
        )
        training.progress.epoch += 1

    return run_epoch


def loop_rows(project: dict, corpus: str, repeats: int) -> list[tuple]:
    rows = []
    for model_name in MODELS:
        argv = case_argv([], corpus, model_name, "--no-progress")
        config, training, runtime = build_training(project, argv)
        tokens = sum(training.train_loader.dataset.dataset.lengths)
        bare_model = copy.deepcopy(training.model)
        loops = {
            "generated": generated_loop(project, config, training, runtime),
            "bare": bare_loop(bare_model, project, config, training.train_loader),
        }
        seconds = {name: [] for name in loops}
        for run_epoch in loops.values():  # warm-up
            run_epoch()
        for round_index in range(repeats):
            order = list(loops) if round_index % 2 == 0 else list(reversed(loops))
            for name in order:
                started = time.perf_counter()
                loops[name]()
                seconds[name].append(time.perf_counter() - started)
            print(f"{model_name} round {round_index + 1}/{repeats}", file=sys.stderr)
        ratio = statistics.median(
            b / g for b, g in zip(seconds["bare"], seconds["generated"], strict=True)
        )
        for name in loops:
            rows.append((model_name, name, tokens / statistics.median(seconds[name]), ratio))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds per model")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    shutil.rmtree(SCRATCH / "runs", ignore_errors=True)
    project_dir = render_project(SCRATCH / "project", SCRATCH, "task=text_classification")
    project = import_project(project_dir, PROJECT_MODULES)
    corpus = write_corpus()
    padding = padding_rows(project, corpus)
    loops = loop_rows(project, corpus, repeats)
    print(f"machine: {machine_line()}")
    print("\n| data | sampler | training texts | mean tokens | padding share |")
    print("| --- | --- | ---: | ---: | ---: |")
    for data, sampler, count, mean, share in padding:
        print(f"| {data} | {sampler} | {count} | {mean:.1f} | {share:.1f} % |")
    print(f"\n{repeats} interleaved rounds after a warm-up epoch each; languages data, batch 64")
    print("| model | loop | tokens/s (median) | generated / bare |")
    print("| --- | --- | ---: | ---: |")
    for model, loop, speed, ratio in loops:
        print(f"| {model} | {loop} | {speed:.0f} | {ratio if loop == 'generated' else 1:.3f} |")
    bucketed = [share for _, sampler, _, _, share in padding if sampler == "length-bucketed"]
    ratios = [ratio for _, loop, _, ratio in loops if loop == "generated"]
    print(
        f"\npadding share with bucketing: at most {max(bucketed):.1f} % (bar {PADDING_BAR} %): "
        f"{'met' if max(bucketed) <= PADDING_BAR else 'NOT met'}"
    )
    print(
        f"generated / bare: at least {min(ratios):.3f} (bar {LOOP_BAR}): "
        f"{'met' if min(ratios) >= LOOP_BAR else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
