"""Every code-shaping combination trains a short CPU run in a fresh process, with its switches;
the all-pairs set of them is in the fast tier, the rest are slow tests."""

import pytest
import torch

from conftest import INSIGHT, read_metrics, run_command, tiny_run, train_command
from options import (
    ALL_OFF,
    ALL_ON,
    code_shaping_combinations,
    combination_id,
    pairwise_combinations,
    uses_ddp,
    uses_dp,
    uses_tensorboard,
    uses_wandb,
)

SHORT_RUN = tiny_run("--name", "matrix", "--cam-every", "2", *INSIGHT, epochs=2)


def switches(combo: dict) -> list[str]:
    flags = []
    if combo["mixed_precision"] == "yes":
        flags.append("--amp")
    if uses_dp(combo) and not uses_ddp(combo):
        flags.append("--dp")
    if combo["onnx_export"] == "yes":
        flags.append("--export-onnx")
    return flags


PAIRWISE = pairwise_combinations([ALL_ON, ALL_OFF])
MATRIX = [
    pytest.param(
        combo, id=combination_id(combo), marks=() if combo in PAIRWISE else pytest.mark.slow
    )
    for combo in code_shaping_combinations()
]


@pytest.mark.parametrize("combo", MATRIX)
def test_combination_trains_on_cpu(render, preloaded_python, combo, tmp_path):
    project = render(**combo)
    command = [*train_command(preloaded_python, 2 if uses_ddp(combo) else 1), *SHORT_RUN]
    command += ["--output-dir", str(tmp_path)]
    result = run_command([*command, *switches(combo)], project, WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr[-3000:]

    run_dir = tmp_path / "matrix"
    assert (run_dir / "last.pt").stat().st_size > 0
    assert (run_dir / "best.pt").stat().st_size > 0
    assert "config:" in (run_dir / "train.log").read_text()
    records = read_metrics(run_dir)
    assert [record["epoch"] for record in records] == [1, 2]
    assert all(0.0 <= record["val_acc"] <= 1.0 for record in records)
    assert [path.name for path in (run_dir / "cam").iterdir()] == ["epoch-002.png"]
    log = result.stderr
    assert "Traceback" not in log and "Logging error" not in log
    if uses_ddp(combo):
        assert "world size 2" in log
    # best.pt's end-of-run look at the whole validation split (32 images), by one process
    embedded = (run_dir / "embeddings" / "metadata.tsv").read_text().splitlines()
    assert len(embedded) == 1 + 32 and log.count("looked at best.pt") == 1
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert not [key for key in weights if key.startswith("module.")]  # saved unwrapped
    if uses_dp(combo) and not uses_ddp(combo):
        assert "--dp does nothing here" in log
    if combo["mixed_precision"] == "yes":
        assert "autocast bfloat16" in log
    if uses_tensorboard(combo):
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    if uses_wandb(combo):
        assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    if combo["onnx_export"] == "yes":
        assert (run_dir / "model.onnx").stat().st_size > 0
        assert "onnxruntime max |diff|" in log
