import csv
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from {{ cookiecutter.project_slug }} import predict
from {{ cookiecutter.project_slug }}.config.parser import saved_config
from {{ cookiecutter.project_slug }}.data.loaders import all_samples
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.data.transforms import image_file_transform
from {{ cookiecutter.project_slug }}.datasets import build_datasets
from {{ cookiecutter.project_slug }}.models import build_model
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint, load_model_weights
from {{ cookiecutter.project_slug }}.tasks import build_task
from {{ cookiecutter.project_slug }}.training.validation import score

from conftest import PREDICT_CLASSES, predicted

# Most tests share one trained run (conftest.predict_run), and predict is the same code in every
# combination: the all-options project runs them, the others skip them with the slow tests.
pytestmark = pytest.mark.slow

READABLE = ("cat/grey.png", "cat/rgb.png", "dog/photo.jpg", "dog/rgba.png", "fox/palette.gif")
UNREADABLE = ("broken.png", "fake.jpg")


@pytest.fixture(autouse=True)
def private_check_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def exit_code(argv: list[str]) -> int:
    """predict's exit code, whether main returns it or argparse exits with it."""
    try:
        return predict.main(argv)
    except SystemExit as stop:
        return stop.code


def predictions(tmp_path, capsys, *argv: str) -> dict[str, dict[str, float]]:
    output = tmp_path / "predictions.csv"
    assert exit_code([*argv, "--output", str(output), "--overwrite"]) == 0
    capsys.readouterr()
    return predicted(output)


def evaluated(checkpoint: Path, folder: Path, for_inference: bool = True) -> dict[str, list]:
    """Each image's class probabilities as evaluate computes them for `folder` as its data."""
    state = load_checkpoint(checkpoint)
    config = saved_config(state["config"])
    splits, spec = build_datasets(replace(config.data, data_dir=folder), augment=False)
    dataset = all_samples(splits)
    model = build_model(config.model.model, spec)
    load_model_weights(model, state, checkpoint, for_inference=for_inference)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    cpu = torch.device("cpu")
    task = build_task("image_classification", config, spec, None, cpu)
    results = score(model, loader, task, cpu, keep_predictions=True)
    paths = [str(path) for part in dataset.datasets for path, _ in part.samples]
    return dict(zip(paths, results["probabilities"].tolist(), strict=True))


def test_checkpoint_predictions_equal_evaluations(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    rows = predictions(tmp_path, capsys, str(images), "--checkpoint", str(run_dir / "best.pt"))
    expected = evaluated(run_dir / "best.pt", images)
    assert sorted(rows) == sorted(expected) == sorted(str(images / name) for name in READABLE)
    for path, probabilities in expected.items():
        by_class = rows[path]
        assert len(by_class) == len(PREDICT_CLASSES)  # --top-k 5 capped at the class count
        assert (
            max(by_class, key=by_class.get)
            == PREDICT_CLASSES[probabilities.index(max(probabilities))]
        )
        for name, probability in zip(PREDICT_CLASSES, probabilities, strict=True):
            assert by_class[name] == pytest.approx(probability, abs=1e-5)
    raw_weights = evaluated(run_dir / "best.pt", images, for_inference=False)
    differences = [
        abs(value - other)
        for path in expected
        for value, other in zip(expected[path], raw_weights[path], strict=True)
    ]
    assert max(differences) > 1e-4  # the EMA's weights, not the raw ones, made the predictions


def test_single_channel_models_see_files_in_grey():
    """A digits model gets one channel, resized and normalised as evaluation does."""
    spec = DataSpec(("0", "1"), 1, 8, (0.5,), (0.5,), 8)
    image = Image.new("RGB", (24, 16), (0, 255, 0))  # pure green: grey level 150 (ITU-R 601)
    pixels = image_file_transform(spec)(image)
    assert pixels.shape == (1, 8, 8)
    assert torch.allclose(pixels, torch.full((1, 8, 8), (150 / 255 - 0.5) / 0.5))


def test_csv_holds_a_ranked_row_per_readable_image(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    output = tmp_path / "out" / "predictions.csv"
    argv = [str(images), "--checkpoint", str(run_dir), "--top-k", "2", "--batch-size", "2"]
    assert exit_code([*argv, "--output", str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    with open(output, newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header == ["path", "class", "probability", "top_k"]
    assert [row[0] for row in rows] == [str(images / name) for name in READABLE]
    for path, name, probability, top_k in rows:
        ranked = [entry.rsplit(":", 1) for entry in top_k.split(";")]
        values = [float(value) for _, value in ranked]
        assert len(ranked) == 2 and ranked[0] == [name, probability]
        assert all(label in PREDICT_CLASSES for label, _ in ranked)
        assert values == sorted(values, reverse=True) and sum(values) <= 1 + 1e-5
        assert any(line.startswith(f"{path}: {name} ") for line in printed)
    assert printed[-1] == f"{len(READABLE)} prediction(s) written to {output}"


def test_unreadable_files_are_named_and_counted(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    output = tmp_path / "predictions.csv"
    argv = [str(images), "--checkpoint", str(run_dir), "--output", str(output)]
    assert exit_code(argv) == 0
    errors = capsys.readouterr().err.splitlines()
    named = [line for line in errors if line.startswith("skipped ") and " of " not in line]
    assert [line.split(": ")[0] for line in named] == [
        f"skipped {images / name}" for name in UNREADABLE
    ]
    assert "image file is truncated" in named[0]
    total = len(READABLE) + len(UNREADABLE)
    assert errors[-1] == (
        f"skipped 2 of {total} files: {images / 'broken.png'}, {images / 'fake.jpg'}"
    )
    assert f"ignored 1 not images: {images / 'notes.txt'}" in errors
    assert len(predicted(output)) == len(READABLE)


def test_hidden_folders_are_skipped_and_named(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    hidden = folder / ".ipynb_checkpoints"
    hidden.mkdir()
    shutil.copy(folder / READABLE[0], hidden / "copy-checkpoint.png")
    output = tmp_path / "predictions.csv"
    assert exit_code([str(folder), "--checkpoint", str(run_dir), "--output", str(output)]) == 0
    errors = capsys.readouterr().err.splitlines()
    assert (
        f"ignored 2 not images: {folder / '.ipynb_checkpoints'}, {folder / 'notes.txt'}" in errors
    )
    assert len(predicted(output)) == len(READABLE)


def test_a_list_file_names_images_relative_to_itself(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    shutil.copytree(images, tmp_path / "images")
    (tmp_path / "lists").mkdir()
    list_file = tmp_path / "lists" / "todo.txt"
    absolute = tmp_path / "images" / "dog" / "rgba.png"
    list_file.write_text(f"# to classify\n\n  ../images/cat/grey.png\n{absolute}\n#{absolute}\n")
    rows = predictions(tmp_path, capsys, str(list_file), "--checkpoint", str(run_dir))
    relative = tmp_path / "lists" / "../images/cat/grey.png"
    assert list(rows) == [str(relative), str(absolute)]
    everything = predictions(
        tmp_path, capsys, str(tmp_path / "images"), "--checkpoint", str(run_dir)
    )
    assert rows[str(relative)] == everything[str(tmp_path / "images" / "cat" / "grey.png")]


def test_a_run_folder_means_its_best_checkpoint(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    (tmp_path / "copy").mkdir()
    shutil.copy(run_dir / "best.pt", tmp_path / "copy" / "best.pt")
    from_folder = predictions(tmp_path, capsys, str(images), "--checkpoint", str(tmp_path / "copy"))
    from_file = predictions(tmp_path, capsys, str(images), "--checkpoint", str(run_dir / "best.pt"))
    assert from_folder == from_file


def test_an_existing_csv_is_kept_unless_overwrite(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    output = tmp_path / "predictions.csv"
    output.write_text("earlier results\n")
    argv = [str(images / "cat"), "--checkpoint", str(run_dir), "--output", str(output)]
    assert exit_code(argv) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: --output {output} exists: pass --overwrite")
    assert output.read_text() == "earlier results\n"
    assert exit_code([*argv, "--overwrite"]) == 0
    assert len(predicted(output)) == 2


def test_nothing_readable_fails_without_a_csv(predict_run, tmp_path, capsys):
    run_dir, images = predict_run
    output = tmp_path / "predictions.csv"
    argv = [str(images / name) for name in UNREADABLE]
    assert exit_code([*argv, "--checkpoint", str(run_dir), "--output", str(output)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1].startswith("error: none of the 2 file(s) could be read as an image")
    assert not output.exists()


def written(name: str, content: bytes):
    def setup(root: Path) -> Path:
        (root / name).write_bytes(content)
        return root / name

    return setup


def checkpoint_of_tensors(root: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, root / "tensors.pt")
    return root / "tensors.pt"


def folder_with_last_only(root: Path) -> Path:
    (root / "run").mkdir()
    (root / "run" / "last.pt").write_bytes(b"")
    return root / "run"


def folder_of_runs(root: Path) -> Path:
    """A folder of run folders (an --output-dir): its runs hold the checkpoints, it none."""
    (root / "runs" / "first").mkdir(parents=True)
    (root / "runs" / "first" / "config.yaml").write_text("epochs: 1\n")
    return root / "runs"


def empty_folder(root: Path) -> Path:
    (root / "empty" / "sub").mkdir(parents=True)
    (root / "empty" / "sub" / "readme.md").write_text("no images")
    return root / "empty"


IMAGES = "{images}"  # the folder of images to predict
CHECKPOINT = "{checkpoint}"  # the run's best.pt
MISTAKES = {
    "missing image path": (
        ["nowhere.jpg", "--checkpoint", CHECKPOINT],
        "nowhere.jpg does not exist",
    ),
    "folder without images": ([empty_folder, "--checkpoint", CHECKPOINT], "has no image files"),
    "binary list file": (
        [written("photo.heic", b"\x00\xff\xfe binary"), "--checkpoint", CHECKPOINT],
        "is neither an image file",
    ),
    "list file of comments only": (
        [written("list.txt", b"# nothing yet\n\n"), "--checkpoint", CHECKPOINT],
        "names no files",
    ),
    "top-k zero": (
        [IMAGES, "--checkpoint", CHECKPOINT, "--top-k", "0"],
        "--top-k: must be a positive",
    ),
    "unknown device": (
        [IMAGES, "--checkpoint", CHECKPOINT, "--device", "tpu"],
        "--device: must be",
    ),
    "missing checkpoint": ([IMAGES, "--checkpoint", "missing.pt"], "missing.pt does not exist"),
    "text file as checkpoint": (
        [IMAGES, "--checkpoint", written("notes.pt", b"just text")],
        "is truncated or not a PyTorch checkpoint",
    ),
    "image as checkpoint": (
        [IMAGES, "--checkpoint", IMAGES + "/cat/rgb.png"],
        "is truncated or not a PyTorch checkpoint",
    ),
    "tensors as checkpoint": (
        [IMAGES, "--checkpoint", checkpoint_of_tensors],
        "is not a checkpoint written by this project",
    ),
    "run folder without best.pt": (
        [IMAGES, "--checkpoint", folder_with_last_only],
        "has no best.pt",
    ),
    "output onto a folder": (
        [IMAGES, "--checkpoint", CHECKPOINT, "--output", IMAGES],
        "is a folder",
    ),
    "folder of run folders as checkpoint": (
        [IMAGES, "--checkpoint", folder_of_runs],
        "holds no best.pt or last.pt, so is not a run folder",
    ),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_mistakes_get_one_line(predict_run, tmp_path, capsys, monkeypatch, name):
    run_dir, images = predict_run
    monkeypatch.chdir(tmp_path)
    arguments, message = MISTAKES[name]
    argv = [
        str(argument(tmp_path))
        if callable(argument)
        else argument.format(images=images, checkpoint=run_dir / "best.pt")
        for argument in arguments
    ]
    assert exit_code(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (error,) = captured.err.splitlines()
    assert error.startswith("error:") and message in error
    assert not (tmp_path / "predictions.csv").exists()


def test_an_onnx_file_needs_the_onnx_export_option(predict_run, tmp_path, capsys, monkeypatch):
    """A project generated without onnx_export has no predict_onnx module."""
    run_dir, images = predict_run
    monkeypatch.setattr(predict, "ONNX_BACKEND", f"{predict.__package__}.no_such_module")
    output = tmp_path / "predictions.csv"
    argv = [str(images), "--checkpoint", str(tmp_path / "model.onnx"), "--output", str(output)]
    assert exit_code(argv) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("error:") and "needs the onnx_export option" in error
    assert not output.exists()
