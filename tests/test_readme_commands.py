"""The generated README's command blocks run as written, in order, in a fresh render.

Every ```bash block is marked `<!-- runnable on CPU -->` or `<!-- not run by the README test:
WHY -->` (it needs a GPU, the network, a cluster or a login, or it starts a server). The
runnable ones run in one shell session, as a reader pasting them in turn would run them: in an
image render with `data/photos` holding a few real photographs, in a text render with
`data/texts` holding real messages in three languages, the reader's own data that the README's
examples name.
"""

import csv
import gettext
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import django
import pytest

from conftest import project_environment, read_metrics
from options import (
    ALL_OFF,
    ALL_ON,
    code_shaping_combinations,
    combination_id,
    pairwise_combinations,
)
from photos import build_photo_folder

BLOCK = re.compile(r"(?:<!-- ([^\n]*) -->\n)?```bash\n(.*?)```", re.DOTALL)
RUNNABLE = "runnable on CPU"
NOT_RUN = re.compile(r"not run by the README test: \S.*")
# The render whose README holds every runnable block (DDP, ONNX); without a logger, since no
# logger block is runnable and each would add its own cost to every run.
EVERY_RUNNABLE_BLOCK = {
    "logger": "none",
    "mixed_precision": "yes",
    "multi_gpu": "both",
    "onnx_export": "yes",
}
TEXT = {"task": "text_classification", "project_name": "Text Classifier"}
# Texts of the languages the embedded languages dataset leaves out, as a user's own data: each
# class a language, uneven in size (the README's --class-weights example has rare classes).
TEXT_LANGUAGES = {"czech": "cs", "danish": "da", "finnish": "fi"}
TEXTS_PER_CLASS = {"train": (80, 320, 160), "val": (16, 40, 24), "test": (16, 40, 24)}


def command_blocks(readme: str) -> list[tuple[str, str]]:
    """(marker, commands) of each bash block: the comment just above it, or ""."""
    return BLOCK.findall(readme)


def runnable_script(readme: str) -> str:
    return "\n".join(commands for marker, commands in command_blocks(readme) if marker == RUNNABLE)


def command_shims(folder: Path, python: list[str]) -> Path:
    """`python` and `torchrun` on PATH, as in an activated environment (but preloaded).

    `python -m ruff` runs in this interpreter: ruff replaces its process with its binary,
    which a preloaded process cannot report back.
    """
    folder.mkdir()
    preloaded = " ".join(f'"{part}"' for part in python)
    scripts = {
        "python": f'case "$1 $2" in "-m ruff") exec "{sys.executable}" "$@";; esac\n'
        f'exec {preloaded} "$@"\n',
        "torchrun": f'exec {preloaded} -m torch.distributed.run "$@"\n',
    }
    for name, script in scripts.items():
        shim = folder / name
        shim.write_text("#!/bin/sh\n" + script)
        shim.chmod(0o755)
    return folder


# Every value of each code-shaping option, and every pair of them, in text renders.
BLOCK_MARKER_RENDERS = [
    *code_shaping_combinations(),
    *({**combo, **TEXT} for combo in pairwise_combinations([ALL_ON, ALL_OFF])),
]


def render_id(combo: dict) -> str:
    return combination_id(combo) + ("-text" if combo.get("task") == TEXT["task"] else "")


@pytest.mark.parametrize("combo", BLOCK_MARKER_RENDERS, ids=render_id)
def test_every_command_block_says_whether_it_runs_on_cpu(render, combo):
    blocks = command_blocks((render(**combo) / "README.md").read_text())
    unmarked = [
        commands.splitlines()[0]
        for marker, commands in blocks
        if marker != RUNNABLE and not NOT_RUN.fullmatch(marker)
    ]
    assert unmarked == []
    assert sum(marker == RUNNABLE for marker, _ in blocks) >= 10


def run_folders(script: str, default_run: str) -> set[str]:
    """The run folders the commands name (`--name NAME`), and the default run's."""
    return set(re.findall(r"--name (\S+)", script)) | {default_run}


def final_val_acc(run: Path) -> float:
    return read_metrics(run)[-1]["val_acc"]


def run_readme_commands(project: Path, python: list[str], shims: Path) -> str:
    """Run the README's runnable blocks in order in the project; the script that ran."""
    script = runnable_script((project / "README.md").read_text())
    shims = command_shims(shims, python)
    env = project_environment(project, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "-e", "-x", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return script


def translations(language: str) -> set[str]:
    """The messages Django's translators wrote in `language`, from the installed package."""
    found = set()
    for catalog in Path(django.__file__).parent.glob(f"**/locale/{language}/LC_MESSAGES/*.mo"):
        with open(catalog, "rb") as file:
            entries = gettext.GNUTranslations(file)._catalog.items()
        found |= {text.strip() for key, text in entries if isinstance(key, str) and key}
    return found - {""}


def build_text_folder(root: Path) -> None:
    """train.csv, val.csv and test.csv (text, label) under `root`, as a spreadsheet exports
    them: UTF-8 with a byte-order mark, Windows line ends. A message two of the languages share
    is left out, so no text is in two splits or classes."""
    messages = {label: translations(code) for label, code in TEXT_LANGUAGES.items()}
    rows = {split: [] for split in TEXTS_PER_CLASS}
    for position, (label, texts) in enumerate(messages.items()):
        others = set().union(*(messages[other] for other in messages if other != label))
        own = sorted(texts - others)
        random.Random(label).shuffle(own)
        for split, counts in TEXTS_PER_CLASS.items():
            rows[split] += [(text, label) for text in own[: counts[position]]]
            own = own[counts[position] :]
    root.mkdir(parents=True)
    for split, split_rows in rows.items():
        random.Random(split).shuffle(split_rows)
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8-sig") as file:
            writer = csv.writer(file, lineterminator="\r\n")
            writer.writerow(["text", "label"])
            writer.writerows(split_rows)


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow  # about two minutes: run by make test, not the fast tier
def test_readme_commands_run_in_order_as_written(render, preloaded_python, tmp_path):
    project = shutil.copytree(render(**EVERY_RUNNABLE_BLOCK), tmp_path / "project")
    # 66 training images: enough for the default --batch-size 64.
    photos = {"classes": 3, "train_per_class": 22, "val_per_class": 2, "test_per_class": 2}
    build_photo_folder(project / "data" / "photos", **photos)
    script = run_readme_commands(project, preloaded_python, tmp_path / "bin")

    runs = project / "runs"
    expected = run_folders(script, "digits-simple_cnn")
    missing = [name for name in expected if not (runs / name / "best.pt").exists()]
    assert missing == []
    assert [record["epoch"] for record in read_metrics(runs / "quickstart")] == [1, 2, 3]
    assert (runs / "quickstart" / "model.onnx").exists()
    assert final_val_acc(runs / "ddp-quickstart") > 0.8  # one epoch scored 0.09 (BatchNorm)
    assert final_val_acc(runs / "digits-simple_cnn") > 0.95  # "~98%"
    assert (runs / "sweep" / "best.yaml").exists() and (
        runs / "photos-sweep" / "best.yaml"
    ).exists()
    for table in ("predictions.csv", "last.csv", "todo.csv", "onnx.csv"):
        assert len((project / table).read_text().splitlines()) > 1, table


ONNX_EXAMPLE = re.compile(r"<!-- onnxruntime example -->\n```python\n(.*?)```", re.DOTALL)


@pytest.mark.slow  # about a minute: run by make test, not the fast tier
def test_text_readme_commands_run_in_order_as_written(render, preloaded_python, tmp_path):
    project = shutil.copytree(render(**EVERY_RUNNABLE_BLOCK, **TEXT), tmp_path / "project")
    build_text_folder(project / "data" / "texts")
    script = run_readme_commands(project, preloaded_python, tmp_path / "bin")

    runs = project / "runs"
    default_run = runs / "languages-bag_of_embeddings"
    expected = run_folders(script, default_run.name)
    missing = [name for name in expected if not (runs / name / "best.pt").exists()]
    assert missing == []
    assert [record["epoch"] for record in read_metrics(runs / "quickstart")] == [1, 2, 3]
    assert (runs / "quickstart" / "model.onnx").exists()
    assert final_val_acc(runs / "ddp-quickstart") > 0.6  # "about 0.70"
    assert final_val_acc(default_run) > 0.78  # "~81%"
    assert (default_run / "tokenizer.json").exists()
    assert (default_run / "mistakes.csv").read_text(encoding="utf-8").startswith("text,")
    report = json.loads((runs / "texts" / "eval_test.json").read_text())
    assert report["classes"] == sorted(TEXT_LANGUAGES) and report["val_acc"] > 1 / 3
    assert (runs / "sweep" / "best.yaml").exists() and (runs / "texts-sweep" / "best.yaml").exists()
    for table in ("predictions.csv", "todo.csv", "stdin.csv", "onnx.csv"):
        assert len(csv_rows(project / table)) >= 1, table
    assert [row["path"] for row in csv_rows(project / "todo.csv")] == ["todo.txt:1", "todo.txt:2"]

    assert_onnx_example_agrees_with_predict(project)


def assert_onnx_example_agrees_with_predict(project: Path) -> None:
    """The README's onnxruntime example, run where the Export section wrote model.onnx (from the
    default run's best.pt), gives the classes and probabilities that predict gave with that
    best.pt (predictions.csv) for the texts both classified."""
    (example,) = ONNX_EXAMPLE.findall((project / "README.md").read_text())
    by_onnx = subprocess.run(
        [sys.executable, "-c", example], cwd=project, capture_output=True, text=True
    )
    assert by_onnx.returncode == 0, by_onnx.stderr[-2000:]
    by_predict = {row["path"]: row for row in csv_rows(project / "predictions.csv")}
    printed = [line.split(" ", 2) for line in by_onnx.stdout.splitlines()]  # class, p, text
    both = [(name, float(p), by_predict[text]) for name, p, text in printed if text in by_predict]
    assert both, by_onnx.stdout
    for name, probability, predicted in both:
        assert name == predicted["class"]
        assert probability == pytest.approx(float(predicted["probability"]), abs=1e-3)
