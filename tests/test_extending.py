"""A dataset and a model added as the generated README's "Add a dataset or a model" says: its
two example files written into a default render, nothing else edited, then every command run
on them as a user would."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import read_metrics, run_command, train_command
from options import SLUG

SECTION = re.compile(r"^## Add a dataset or a model\n(.*?)^## ", re.DOTALL | re.MULTILINE)
EXAMPLE_FILE = re.compile(r"`(src/\S+\.py)`:\n\n```python\n(.*?)```", re.DOTALL)
CHOICES = re.compile(r"--(dataset|model) \{([^}]*)\}")
SHAPES = ("circle", "square", "triangle")
# 900 drawn images, 720 to train on: 45 updates of 16 per epoch. BatchNorm's running statistics
# need some 90 updates (at momentum 0.1) before validation leaves chance, one third.
TRAIN_FLAGS = ("--dataset", "shapes", "--model", "mobilenet_v3_small", "--epochs", "3")
TRAIN_FLAGS += ("--batch-size", "16", "--cam-every", "1", "--no-progress")


def add_readme_examples(project: Path) -> list[str]:
    """Write the section's example files (a path line, then a python block) into the project;
    their paths."""
    section = SECTION.search((project / "README.md").read_text()).group(1)
    examples = EXAMPLE_FILE.findall(section)
    for path, code in examples:
        assert not (project / path).exists(), f"{path} exists: the README's files must be new"
        (project / path).write_text(code)
    return [path for path, _ in examples]


def draw_pictures(folder: Path) -> Path:
    """One RGB file of each shape, three times the side of the training images."""
    folder.mkdir()
    for shape in SHAPES:
        image = Image.new("RGB", (96, 96), "black")
        pen = ImageDraw.Draw(image)
        if shape == "circle":
            pen.ellipse((20, 20, 76, 76), fill="white")
        elif shape == "square":
            pen.rectangle((20, 20, 76, 76), fill="white")
        else:
            pen.polygon([(48, 18), (18, 78), (78, 78)], fill="white")
        image.save(folder / f"{shape}.png")
    return folder


def predicted_classes(predictions_csv: Path) -> dict[str, str]:
    with predictions_csv.open(newline="") as rows:
        return {Path(row["path"]).stem: row["class"] for row in csv.DictReader(rows)}


def test_a_dataset_and_a_model_added_as_the_readme_says_work_with_every_command(
    render, preloaded_python, tmp_path
):
    project = tmp_path / "project"
    shutil.copytree(render(), project)  # the session's render stays as generated
    package = f"src/{SLUG}"
    assert add_readme_examples(project) == [
        f"{package}/datasets/shapes.py",
        f"{package}/models/mobilenet_v3_small.py",
    ]

    helped = run_command([*train_command(preloaded_python), "--help"], project)
    assert helped.returncode == 0, helped.stderr[-3000:]
    choices = {flag: names.split(",") for flag, names in CHOICES.findall(helped.stdout)}
    assert "shapes" in choices["dataset"] and "mobilenet_v3_small" in choices["model"]

    run_dir = tmp_path / "runs" / "shapes"
    train = [*train_command(preloaded_python), *TRAIN_FLAGS, "--output-dir", str(run_dir.parent)]
    train += ["--name", run_dir.name]
    stopped = run_command([*train, "--stop-after-epochs", "1"], project)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1]
    resumed = run_command([*train, "--resume", "auto"], project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    metrics = read_metrics(run_dir)
    assert [record["epoch"] for record in metrics] == [1, 2, 3]
    best_acc = max(record["val_acc"] for record in metrics)
    assert best_acc >= 0.8, f"chance is 1/3; validation: {[r['val_acc'] for r in metrics]}"
    cams = sorted(path.name for path in (run_dir / "cam").iterdir())
    assert cams == ["epoch-001.png", "epoch-002.png", "epoch-003.png"]
    features = (run_dir / "embeddings" / "features.tsv").read_text().splitlines()
    # 180 validation images; 1024 features, the input of the embedding layer, classifier[-1]
    assert (len(features), len(features[0].split("\t"))) == (180, 1024)

    command = [*preloaded_python, "-m"]
    best = str(run_dir / "best.pt")
    evaluated = run_command([*command, f"{SLUG}.evaluate", "--checkpoint", best], project)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((run_dir / "eval_val.json").read_text())
    assert report["classes"] == list(SHAPES)
    assert report["val_acc"] == pytest.approx(best_acc, abs=1e-4)

    onnx = run_dir / "model.onnx"
    export = [*command, f"{SLUG}.export", "--checkpoint", best, "--output", str(onnx)]
    exported = run_command(export, project)
    assert exported.returncode == 0, exported.stderr[-3000:]

    pictures = draw_pictures(tmp_path / "pictures")
    for model_file in (run_dir, onnx):
        output = tmp_path / f"{model_file.name}.csv"
        predict = [*command, f"{SLUG}.predict", str(pictures), "--checkpoint", str(model_file)]
        predicted = run_command([*predict, "--output", str(output)], project)
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert predicted_classes(output) == {shape: shape for shape in SHAPES}, model_file

    own_tests = ["tests/test_models.py", "tests/test_insight.py", "-k", "mobilenet_v3_small"]
    tested = run_command([*command, "pytest", "-q", "-p", "no:cacheprovider", *own_tests], project)
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "2 passed" in tested.stdout
