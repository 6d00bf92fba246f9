"""Real photographs, in the layouts and formats people have, through a rendered project.

The photos are crops of pictures bundled with scikit-image (tests/photos.py): mixed sizes
(50-130 px), formats (jpg, png, webp, bmp, tif, gif) and modes (L, RGBA, P, 16-bit).
"""

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import read_metrics, run_command, train_command
from options import SLUG
from photos import build_photo_folder

TARGET_ACCURACY = 0.80
TARGET_SECONDS = 60.0


def photo_command(python, data_dir, output_dir, *flags: str, processes: int = 1) -> list[str]:
    command = [*train_command(python, processes), "--dataset", "image_folder"]
    command += ["--data-dir", str(data_dir), "--output-dir", str(output_dir), "--no-progress"]
    return [*command, *flags]


def seconds_to_reach(records: list[dict], accuracy: float) -> float | None:
    """Training seconds (summed epoch times) until val_acc first reached `accuracy`."""
    elapsed = 0.0
    for record in records:
        elapsed += record["epoch_seconds"]
        if record["val_acc"] >= accuracy:
            return elapsed
    return None


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["train_val", "train_test", "flat"])
def test_default_recipe_learns_real_photos(render, preloaded_python, tmp_path, layout):
    photos = build_photo_folder(tmp_path / "photos", layout)
    project = render()  # every default answer
    command = photo_command(preloaded_python, tmp_path / "photos", tmp_path / "runs")
    result = run_command([*command, "--name", "photos"], project)
    assert result.returncode == 0, result.stderr[-3000:]

    run_dir = tmp_path / "runs" / "photos"
    checkpoint = torch.load(run_dir / "best.pt", weights_only=True)
    assert checkpoint["data_spec"]["class_names"] == photos["classes"]  # never "train", "test"
    records = read_metrics(run_dir)
    seconds = seconds_to_reach(records, TARGET_ACCURACY)
    curve = [(record["epoch"], round(record["val_acc"], 3)) for record in records]
    assert seconds is not None and seconds <= TARGET_SECONDS, curve
    assert "checked 208 image(s)" in result.stderr
    split_file = run_dir / "split.json"
    assert split_file.exists() == (layout != "train_val")  # only a carved split is recorded
    if split_file.exists():
        assert checkpoint["split"] == json.loads(split_file.read_text())
    if layout == "train_test":
        evaluation = run_command(
            [*preloaded_python, "-m", f"{SLUG}.evaluate", "--checkpoint", str(run_dir / "best.pt")]
            + ["--split", "test"],
            project,
        )
        assert evaluation.returncode == 0, evaluation.stderr[-2000:]
        report = json.loads((run_dir / "eval_test.json").read_text())
        assert report["images"] == 4 * 12 and report["val_acc"] >= TARGET_ACCURACY - 0.1


RESUME_CASES = {
    "one process": ({"mixed_precision": "yes", "multi_gpu": "none"}, 1),
    "ddp 2 processes": ({"mixed_precision": "yes", "multi_gpu": "ddp"}, 2),
}


@pytest.mark.parametrize("case", RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_exact_resume_with_workers_on_photos(render, preloaded_python, tmp_path, case):
    answers, processes = case
    project = render(logger="none", onnx_export="no", **answers)
    build_photo_folder(tmp_path / "photos", "train_val", classes=3, train_per_class=24)
    flags = ["--image-size", "32", "--batch-size", "12", "--epochs", "2", "--num-workers", "2"]
    flags += ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--amp", "--accum-steps", "2"]
    flags += ["--clip-grad-norm", "1.0", "--deterministic", "--seed", "7"]
    command = photo_command(
        preloaded_python, tmp_path / "photos", tmp_path / "runs", *flags, processes=processes
    )
    runs = [
        ["--name", "straight"],
        ["--name", "resumed", "--stop-after-epochs", "1"],
        ["--name", "resumed", "--resume", "auto"],
    ]
    for run_flags in runs:
        result = run_command([*command, *run_flags], project)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr

    expected, actual = (
        torch.load(tmp_path / "runs" / name / "last.pt", weights_only=True)
        for name in ("straight", "resumed")
    )
    different = [
        key
        for key in expected["model"]
        if not torch.equal(expected["model"][key], actual["model"][key])
    ]
    assert different == []
    timings = {"samples_per_second", "epoch_seconds"}
    assert [
        {key: value for key, value in record.items() if key not in timings}
        for record in read_metrics(tmp_path / "runs" / "straight")
    ] == [
        {key: value for key, value in record.items() if key not in timings}
        for record in read_metrics(tmp_path / "runs" / "resumed")
    ]


ONNX_EXAMPLE = re.compile(r"<!-- onnxruntime example -->\n```python\n(.*?)```", re.DOTALL)
# The generated project's own prediction for the same picture, from best.pt in PyTorch.
PYTORCH_PREDICTION = """
import sys
from pathlib import Path

import torch

from {slug}.runs.checkpoint import load_checkpoint, load_model_weights
from {slug}.data.spec import DataSpec
from {slug}.data.transforms import photo_transforms
from {slug}.data.image_files import load_rgb
from {slug}.models import build_model

checkpoint = load_checkpoint(Path(sys.argv[1]))
spec = DataSpec.from_dict(checkpoint["data_spec"])
model = build_model(checkpoint["config"]["model"], spec).eval()
load_model_weights(model, checkpoint, Path(sys.argv[1]))
_, eval_tf = photo_transforms(spec.image_size, spec.resize_size, spec.mean, spec.std)
with torch.no_grad():
    probabilities = model(eval_tf(load_rgb(Path(sys.argv[2])))[None]).softmax(dim=1)[0]
print(spec.class_names[int(probabilities.argmax())], f"{{float(probabilities.max()):.3f}}")
"""


def test_readme_onnxruntime_example_matches_pytorch(render, preloaded_python, tmp_path):
    project = render(logger="none", mixed_precision="no", multi_gpu="none", onnx_export="yes")
    build_photo_folder(tmp_path / "photos", "train_val", classes=3, train_per_class=24)
    flags = ["--epochs", "3", "--batch-size", "12", "--export-onnx", "--name", "onnx"]
    command = photo_command(preloaded_python, tmp_path / "photos", tmp_path / "runs", *flags)
    result = run_command(command, project)
    assert result.returncode == 0, result.stderr[-3000:]

    service = tmp_path / "service"  # model.onnx alone, as a service receives it
    service.mkdir()
    shutil.copy(tmp_path / "runs" / "onnx" / "model.onnx", service)
    photo = sorted((tmp_path / "photos" / "val" / "grass").glob("*.jpg"))[0]
    Image.open(photo).convert("RGB").save(service / "picture.png")
    (example,) = ONNX_EXAMPLE.findall((project / "README.md").read_text())
    by_onnx = subprocess.run(
        [sys.executable, "-c", example], cwd=service, capture_output=True, text=True
    )
    assert by_onnx.returncode == 0, by_onnx.stderr[-2000:]
    by_pytorch = run_command(
        [*preloaded_python, "-c", PYTORCH_PREDICTION.format(slug=SLUG)]
        + [str(tmp_path / "runs" / "onnx" / "best.pt"), str(service / "picture.png")],
        project,
    )
    assert by_pytorch.returncode == 0, by_pytorch.stderr[-2000:]
    onnx_class, onnx_probability = by_onnx.stdout.split()
    torch_class, torch_probability = by_pytorch.stdout.split()
    assert onnx_class == torch_class
    assert float(onnx_probability) == pytest.approx(float(torch_probability), abs=0.01)
