"""task=text_classification through the one engine: the all-pairs set of the code-shaping
options trains a text classifier in a fresh process with its switches (each of the three text
models in turn, and --monitor val_f1 on every other row); the text project passes its own suite
in the all-options render (in full) and the minimal one (its quick tests)."""

import re
from pathlib import Path

import pytest
import torch

from conftest import INSIGHT, SLUG, read_metrics, run_command, train_command
from options import (
    ALL_OFF,
    ALL_ON,
    combination_id,
    pairwise_combinations,
    uses_ddp,
    uses_dp,
    uses_tensorboard,
    uses_wandb,
)

TEXT = {"task": "text_classification"}
TEXT_MODELS = ("bag_of_embeddings", "bigru", "transformer")
# The default recipe's data, tokenizer and batches (about 4,700 training and 1,170 validation
# messages): two epochs take a few seconds.
SHORT_TEXT_RUN = [
    "--epochs",
    "2",
    "--warmup-epochs",
    "0",
    "--no-progress",
    "--name",
    "matrix",
]
PAIRWISE = pairwise_combinations([ALL_ON, ALL_OFF])
# What only an image project has: a text project neither offers nor carries any of it.
IMAGE_ONLY_FLAGS = ("--channels-last", "--cam-every", "--image-size", "grad-cam")
IMAGE_ONLY_CODE = (
    "GradCam",
    "GradCamEveryFewEpochs",
    "cam/epoch",
    "cam_layer",
    "channels_last",
    "Grad-CAM",
    "image_size_of",
)
IMAGE_ONLY_FILES = ("insight/cam.py", "data/transforms.py")
IMAGE_SPEC_FIELDS = ("in_channels", "image_size", "mean", "std", "resize_size")


def switches(combo: dict, row: int) -> list[str]:
    flags = ["--model", TEXT_MODELS[row % len(TEXT_MODELS)]]
    if row % 2:
        flags += ["--monitor-metric", "val_f1"]  # torchrun's parser takes --monitor
    if combo["mixed_precision"] == "yes":
        flags.append("--amp")
    if uses_dp(combo) and not uses_ddp(combo):
        flags.append("--dp")
    if combo["onnx_export"] == "yes":
        flags.append("--export-onnx")
    return flags


@pytest.mark.parametrize(
    "row, combo", list(enumerate(PAIRWISE)), ids=[combination_id(c) for c in PAIRWISE]
)
def test_text_combination_trains_on_cpu(render, preloaded_python, row, combo, tmp_path):
    project = render(**(combo | TEXT | {"insight": "yes"}))
    command = [*train_command(preloaded_python, 2 if uses_ddp(combo) else 1), *SHORT_TEXT_RUN]
    command += ["--output-dir", str(tmp_path), *INSIGHT, *switches(combo, row)]
    result = run_command(command, project, WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr[-3000:]

    run_dir = tmp_path / "matrix"
    log = result.stderr
    assert "Traceback" not in log and "Logging error" not in log
    records = read_metrics(run_dir)
    assert [record["epoch"] for record in records] == [1, 2]
    assert all(0.0 <= record["val_f1"] <= 1.0 for record in records)
    assert records[-1]["val_acc"] > 1 / 9  # nine languages: better than chance already
    spec = torch.load(run_dir / "best.pt", weights_only=True)["data_spec"]
    assert (run_dir / "tokenizer.json").read_text() == spec["tokenizer"]
    assert set(spec).isdisjoint(IMAGE_SPEC_FIELDS), spec.keys()
    shares = [float(share) for share in re.findall(r"([\d.]+) % of the batches' tokens", log)]
    assert len(shares) == 2 and all(share <= 10 for share in shares), shares
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert not [key for key in weights if key.startswith("module.")]  # saved unwrapped
    if uses_ddp(combo):
        assert "world size 2" in log
    if combo["mixed_precision"] == "yes":
        assert "autocast bfloat16" in log
    if uses_tensorboard(combo):
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    if uses_wandb(combo):
        assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    if combo["onnx_export"] == "yes":
        assert (run_dir / "model.onnx").stat().st_size > 0
        assert "onnxruntime max |diff|" in log
    assert log.count("looked at best.pt") == 1
    metadata = (run_dir / "embeddings" / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert len(metadata) == 1 + 1000  # the --embeddings cap: more validation texts than that
    assert (run_dir / "mistakes.csv").read_text(encoding="utf-8").startswith("text,")


SUITES = {
    "all-options": ALL_ON | {"sweeps": "yes", "insight": "yes"},
    "minimal": ALL_OFF | {"sweeps": "no", "insight": "no"},
}


@pytest.mark.parametrize("combo", SUITES.values(), ids=SUITES.keys())
def test_text_project_passes_its_own_tests(render, preloaded_python, combo):
    project = render(**(combo | TEXT))
    command = [*preloaded_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    if combo is SUITES["minimal"]:
        command += ["-m", "not slow"]
    result = run_command(command, project, WANDB_MODE="offline")
    assert result.returncode == 0, result.stdout[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary


def test_a_text_project_is_named_after_its_task_by_default(cookies):
    result = cookies.bake(extra_context={"task": "text_classification", "init_git": "no"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert project.name == "text_classifier"
    assert (project / "src" / "text_classifier" / "tasks" / "text_classification").is_dir()
    assert 'name = "text_classifier"' in (project / "pyproject.toml").read_text()
    readme = (project / "README.md").read_text()
    assert readme.startswith("# Text Classifier\n\nText classification with PyTorch.")


def test_a_text_project_carries_nothing_only_images_use(render, preloaded_python):
    project = render(**(SUITES["all-options"] | TEXT))
    package = project / "src" / SLUG
    for command in ("train", "evaluate", "predict", "export"):
        result = run_command([*preloaded_python, "-m", f"{SLUG}.{command}", "--help"], project)
        assert result.returncode == 0, result.stderr[-2000:]
        shown = [flag for flag in IMAGE_ONLY_FLAGS if flag in result.stdout.lower()]
        assert shown == [], f"{command} --help offers {shown}"
    sources = "\n".join(path.read_text() for path in package.rglob("*.py"))
    assert [name for name in IMAGE_ONLY_CODE if name in sources] == []
    assert [name for name in IMAGE_ONLY_FILES if (package / name).exists()] == []
