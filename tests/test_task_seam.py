"""Other tasks train through the seam a rendered project ships, with no edit to its engine.

tests/toy_task/ holds two tasks, each with a dataset and a model, one file each, copied into a
render as a team would add them: token sequences of varying length, whose batches are a dict
of padded ids and a mask with a dict of targets; and a toy detector's pictures of different
sizes in a list, with a list of {"boxes", "labels"} dicts as targets (torchvision's detection
layout), plus a training hook that draws the boxes found each epoch (figures/toy_boxes.py,
registered by one line in config/extras.py). The engine trains both with AMP, gradient
accumulation and 2-process DDP, and a run stopped inside an epoch continues with --resume auto
to the same weights and metrics, bit for bit. TensorBoard plots each task's own metrics and
draws nothing of inputs or scores that are neither images nor a classifier's.
"""

import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import read_metrics, run_command, train_command
from options import SLUG

TOY = Path(__file__).parent / "toy_task"
ANSWERS = {"logger": "tensorboard", "mixed_precision": "yes", "multi_gpu": "ddp"}
ANSWERS["onnx_export"] = "yes"
TOY_RUN = ["--dataset", "toy_sequences", "--model", "toy_bag", "--batch-size", "16"]
TOY_RUN += ["--epochs", "3", "--lr", "0.05", "--deterministic", "--no-progress"]
TOY_RUN += ["--amp", "--accum-steps", "2"]
BOXES_RUN = ["--dataset", "toy_boxes", "--model", "toy_box_finder", "--batch-size", "16"]
BOXES_RUN += ["--epochs", "3", "--lr", "0.01", "--deterministic", "--no-progress"]
BOXES_RUN += ["--amp", "--accum-steps", "2"]
TIMINGS = {"samples_per_second", "epoch_seconds"}


@pytest.fixture(scope="module")
def project(render, tmp_path_factory) -> Path:
    """A render with the toy task's files added, and nothing else changed."""
    copy = tmp_path_factory.mktemp("toy-task") / SLUG
    shutil.copytree(render(**ANSWERS), copy)
    package = copy / "src" / SLUG
    for source in TOY.rglob("*.py"):
        target = package / source.relative_to(TOY)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    with (package / "config" / "extras.py").open("a") as extras:
        extras.write('\nEXTRAS.append(Extra("figures.toy_boxes"))\n')
    return copy


def train(project, python, output, *flags, processes=1, name="run", expect=0, run=TOY_RUN):
    command = [*train_command(python, processes), *run, "--output-dir", str(output)]
    result = run_command([*command, "--name", name, *flags], project)
    assert result.returncode == expect, result.stderr[-3000:]
    return output / name


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


def without_timings(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in read_metrics(run_dir)]


def assert_same_run(expected: Path, actual: Path) -> None:
    want, got = weights(expected), weights(actual)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[key], got[key]) for key in want)
    assert without_timings(expected) == without_timings(actual)


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "ddp-2-processes"])
def test_toy_task_learns_and_resumes_mid_epoch_exactly(
    project, preloaded_python, tmp_path, processes
):
    args = (project, preloaded_python, tmp_path)
    straight = train(*args, processes=processes, name="straight")
    records = read_metrics(straight)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    assert records[-1]["val_acc"] >= 0.9 and records[-1]["train_acc"] > records[0]["train_acc"]
    # A stopped run exits 75; plain torchrun reports its workers' 75 as a failure of its own.
    stopped_code = 75 if processes == 1 else 1
    cut = train(
        *args, "--max-minutes", "1e-9", processes=processes, name="cut", expect=stopped_code
    )
    stopped = torch.load(cut / "last.pt", map_location="cpu", weights_only=True)
    assert stopped["epoch"] == 0 and stopped["batches_done"] == 2  # one update of 2 micro-batches
    assert stopped["precision"] == {}  # bfloat16 autocast: no GradScaler state
    train(*args, "--resume", "auto", processes=processes, name="cut")
    assert_same_run(straight, cut)


def test_a_detection_shaped_task_learns_resumes_and_draws_its_boxes(
    project, preloaded_python, tmp_path
):
    args = (project, preloaded_python, tmp_path)
    straight = train(*args, processes=2, name="straight", run=BOXES_RUN)
    records = read_metrics(straight)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    assert records[-1]["val_iou"] > max(0.4, records[0]["val_iou"])
    assert records[-1]["train_iou"] > records[0]["train_iou"]
    assert "monitor: val_iou" in (straight / "config.yaml").read_text()  # the task's headline
    events = EventAccumulator(str(straight / "tensorboard"))
    events.Reload()
    assert {"iou/val", "iou/train", "accuracy/val"} <= set(events.Tags()["scalars"])
    assert events.Tags()["images"] == ["boxes/val"]  # the hook's figure; no input grid
    drawn = events.Images("boxes/val")
    assert [image.step for image in drawn] == [record["step"] for record in records]
    assert drawn[0].width > 4 * 28 and drawn[0].height > 2 * 28  # 8 padded pictures, 4 a row
    cut = train(*args, "--max-minutes", "1e-9", processes=2, name="cut", expect=1, run=BOXES_RUN)
    assert torch.load(cut / "last.pt", map_location="cpu", weights_only=True)["batches_done"] == 2
    train(*args, "--resume", "auto", processes=2, name="cut", run=BOXES_RUN)
    assert_same_run(straight, cut)


def test_evaluate_prints_the_tasks_report_and_export_refuses_in_one_line(
    project, preloaded_python, tmp_path
):
    run_dir = train(project, preloaded_python, tmp_path, "--epochs", "1", "--accum-steps", "1")
    evaluate = [
        *preloaded_python,
        "-m",
        f"{SLUG}.evaluate",
        "--checkpoint",
        str(run_dir / "best.pt"),
    ]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert "accuracy/val" in tags["scalars"] and "loss/train" in tags["scalars"]
    assert tags["images"] == [] and tags["tensors"] == [] and not tags["graph"]
    result = run_command(evaluate, project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("val: loss ")
    export = [*preloaded_python, "-m", f"{SLUG}.export", "--checkpoint", str(run_dir / "best.pt")]
    result = run_command([*export, "--output", str(tmp_path / "model.onnx")], project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: checkpoint {run_dir / 'best.pt'} is a toy_sequences model, which this project "
        "does not export to ONNX: use the checkpoint itself"
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--mixup-alpha", "0.2"], "error: --mixup-alpha: toy_sequences does not support mixup"),
        (["--model", "simple_cnn"], "error: --model simple_cnn takes image_classification batches"),
        (["--monitor", "val_top5"], "error: --monitor val_top5 is not a metric of toy_sequences"),
    ],
    ids=["unsupported-part", "model-of-another-task", "unknown-metric"],
)
def test_flags_the_task_cannot_honour_are_refused_in_one_line(
    project, preloaded_python, flags, expected
):
    command = [*preloaded_python, "-m", f"{SLUG}.train", *TOY_RUN, *flags]
    result = run_command(command, project)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(expected) and "\n" not in result.stderr.strip()
