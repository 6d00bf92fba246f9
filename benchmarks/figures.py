"""What an epoch's figures cost with many classes: TensorBoard's confusion matrix and PR curves.

Renders the default project (TensorBoard logger) and, in one process, times in interleaved
rounds: one training epoch of the digits (1,438 8x8 images, simple_cnn, the default batch of
64) as the generated trainer builds and runs it, and the TensorBoard logger's per-epoch
`log_validation` (the confusion-matrix picture, the PR curves, writing them) for 10, 200 and
1,000 classes. Each class count gets a validation split of 3 images per class (at least the
digits' 360), with random class probabilities. Prints one table of medians and the bar: the
figures of 1,000 classes cost at most 10 % of the epoch.

    .venv/bin/python benchmarks/figures.py 2>/dev/null   # 7 rounds
    .venv/bin/python benchmarks/figures.py --quick       # smoke run
"""

import argparse
import os
import shutil
import statistics
import sys
import time

import torch
from rendered_project import ROOT, build_training, import_project, machine_line, render_project

SCRATCH = ROOT / ".scratch" / "benchmarks" / "figures"
MODULES = ("config.extras", "config.parser", "data.spec", "training.loop", "runs.runtime")
MODULES += ("training.fit", "loggers.tensorboard_logger")
CLASS_COUNTS = (10, 200, 1000)
BAR = 0.10  # the figures of the most classes may cost at most this share of an epoch
EPOCH = "training epoch (digits)"


def training_epoch(project: dict):
    """A function that trains one more epoch of the digits, as the generated trainer does."""
    argv = ["--dataset", "digits", "--device", "cpu", "--output-dir", str(SCRATCH / "runs")]
    config, training, runtime = build_training(project, argv)
    engine = project["training.loop"]

    def one_epoch() -> None:
        engine.train_one_epoch(
            training.model,
            training.train_loader,
            training,
            runtime,
            config.run.log_every,
            lambda values, step: None,
            show_progress=False,
        )

    return config, one_epoch, len(training.train_loader.dataset)


def validation_results(classes: int) -> dict:
    """What validation hands the loggers: a confusion matrix, and every image's class
    probabilities and target."""
    images = max(360, 3 * classes)
    generator = torch.Generator().manual_seed(classes)
    probabilities = torch.randn(images, classes, generator=generator).mul(3).softmax(dim=1)
    targets = torch.arange(images) % classes
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    matrix.index_put_((targets, probabilities.argmax(dim=1)), torch.tensor(1), accumulate=True)
    return {"confusion_matrix": matrix, "probabilities": probabilities, "targets": targets}


def figure_logging(project: dict, config, classes: int):
    """A function that logs one more epoch's figures of `classes` classes to TensorBoard."""
    names = tuple(f"class {index:04d}" for index in range(classes))
    spec = project["data.spec"].DataSpec(names, 1, 8, (0.5,), (0.5,), 8)
    folder = SCRATCH / "runs" / f"{classes}-classes"
    logger = project["loggers.tensorboard_logger"].TensorBoardLogger(folder, config, spec, None)
    results = validation_results(classes)
    steps = iter(range(1, 1_000_000))
    return lambda: logger.log_validation(results, next(steps))


def measure(project: dict, rounds: int, class_counts: tuple[int, ...]) -> dict[str, list[float]]:
    """Seconds of each case in each round; every case runs once untimed first."""
    config, one_epoch, images = training_epoch(project)
    print(f"{EPOCH}: {images} images, batch {config.data.batch_size}")
    cases = {EPOCH: one_epoch}
    for classes in class_counts:
        cases[f"figures, {classes} classes"] = figure_logging(project, config, classes)
    for case in cases.values():
        case()
    seconds = {name: [] for name in cases}
    for round_index in range(rounds):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            seconds[name].append(time.perf_counter() - started)
        print(f"round {round_index + 1}/{rounds}", file=sys.stderr)
    return seconds


def table(seconds: dict[str, list[float]]) -> str:
    epoch = statistics.median(seconds[EPOCH])
    lines = [
        "| what | seconds (median) | min-max | share of the epoch |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in seconds.items():
        median = statistics.median(values)
        share = "" if name == EPOCH else f"{median / epoch:.1%}"
        cells = [name, f"{median:.4f}", f"{min(values):.4f}-{max(values):.4f}", share]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--classes", type=int, nargs="+", default=CLASS_COUNTS)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    shutil.rmtree(SCRATCH, ignore_errors=True)
    project = import_project(render_project(SCRATCH / "project", SCRATCH), MODULES)
    project["config.extras"].load_implementations()
    load = os.getloadavg()[0]
    seconds = measure(project, rounds, tuple(args.classes))
    print(f"machine: {machine_line()}")
    print(f"1-minute load average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"{rounds} interleaved rounds; validation splits of 3 images per class (at least 360)\n")
    print(table(seconds))
    most = max(args.classes)
    share = statistics.median(seconds[f"figures, {most} classes"]) / statistics.median(
        seconds[EPOCH]
    )
    verdict = "HOLDS" if share <= BAR else "MISSED"
    print(f"\nbar: the figures of {most} classes <= {BAR:.0%} of an epoch: {verdict} ({share:.1%})")


if __name__ == "__main__":
    main()
