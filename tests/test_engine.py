"""The training engine's guarantees, checked on rendered projects in fresh processes."""

import json
import math
import socket
import subprocess

import pytest
import torch

from conftest import project_environment, read_metrics, run_command, tiny_run, train_command
from options import SLUG

BASE = {"logger": "none", "onnx_export": "no"}
TINY = tiny_run("--seed", "5")
TIMINGS = {"samples_per_second", "epoch_seconds"}

RESUME_CASES = {
    "plain": ({"mixed_precision": "no", "multi_gpu": "none"}, [], 1),
    "amp-float16-scaler": (
        {"mixed_precision": "yes", "multi_gpu": "none"},
        ["--amp", "--amp-dtype", "float16"],
        1,
    ),
    "amp-bfloat16": ({"mixed_precision": "yes", "multi_gpu": "dp"}, ["--amp"], 1),
    "ddp-2-processes": ({"mixed_precision": "no", "multi_gpu": "ddp"}, [], 2),
    "ddp-amp-float16": (
        {"mixed_precision": "yes", "multi_gpu": "both"},
        ["--amp", "--amp-dtype", "float16"],
        2,
    ),
}


def train(project, python, tmp_path, *flags, processes: int = 1, name: str = "run"):
    command = [*train_command(python, processes), *TINY, "--output-dir", str(tmp_path)]
    result = run_command([*command, "--name", name, *flags], project)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / name, result


def model_weights(run_dir) -> dict:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


def without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in records]


@pytest.mark.parametrize("case", RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_stopped_and_resumed_run_is_bit_identical(render, preloaded_python, tmp_path, case):
    answers, flags, processes = case
    project = render(**BASE, **answers)
    flags = [*flags, "--deterministic", "--epochs", "4", "--mixup-alpha", "0.2"]
    straight, _ = train(project, preloaded_python, tmp_path, *flags, processes=processes)
    args = (project, preloaded_python, tmp_path, *flags)
    train(*args, "--stop-after-epochs", "2", processes=processes, name="resumed")
    resumed, result = train(*args, "--resume", "auto", processes=processes, name="resumed")
    assert "resumed from" in result.stderr

    expected, actual = model_weights(straight), model_weights(resumed)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert without_timings(read_metrics(straight)) == without_timings(read_metrics(resumed))
    checkpoint = torch.load(resumed / "last.pt", weights_only=True)
    assert len(checkpoint["rng"]) == processes  # every rank's RNG streams are saved
    if "float16" in flags:
        assert checkpoint["precision"]["scale"] > 0


def test_dp_on_one_device_trains_exactly_as_without_it(render, preloaded_python, tmp_path):
    """--dp wraps the model in nn.DataParallel even without GPUs: the wrapped path must train,
    validate and save exactly what the plain one does."""
    project = render(**BASE, mixed_precision="no", multi_gpu="dp")
    flags = ["--deterministic", "--epochs", "2"]
    plain, _ = train(project, preloaded_python, tmp_path, *flags, name="plain")
    wrapped, result = train(project, preloaded_python, tmp_path, *flags, "--dp", name="dp")
    assert "--dp does nothing here" in result.stderr
    expected, actual = model_weights(plain), model_weights(wrapped)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert without_timings(read_metrics(plain)) == without_timings(read_metrics(wrapped))


# --monitor-metric is --monitor's spelling for torchrun, whose parser would read --monitor as an
# abbreviation of its own --monitor-interval.
PLATEAU = [
    "--model",
    "mlp",
    "--lr",
    "1e-12",
    "--monitor-metric",
    "val_loss",
    "--min-delta",
    "0.001",
]
PLATEAU += ["--patience", "2", "--epochs", "10"]


def test_early_stopping_stops_at_the_predicted_epoch(render, preloaded_python, tmp_path):
    project = render(**BASE, mixed_precision="no", multi_gpu="none")
    run_dir, result = train(project, preloaded_python, tmp_path, *PLATEAU)
    # Epoch 1 sets the best; with no improvement, epochs 2 and 3 use up a patience of 2.
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1, 2, 3]
    assert "early stopping: val_loss has not improved for 2 epochs" in result.stderr


def test_early_stopping_state_survives_resume(render, preloaded_python, tmp_path):
    project = render(**BASE, mixed_precision="no", multi_gpu="ddp")
    args = (project, preloaded_python, tmp_path, *PLATEAU)
    train(*args, "--stop-after-epochs", "2", processes=2)
    run_dir, result = train(*args, "--resume", "auto", processes=2)
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1, 2, 3]
    assert "early stopping" in result.stderr


def expected_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("accum_steps", [1, 2])
def test_lr_follows_warmup_then_cosine_per_update(render, preloaded_python, tmp_path, accum_steps):
    project = render(**BASE, mixed_precision="no", multi_gpu="none")
    flags = ["--warmup-steps", "3", "--epochs", "3", "--lr", "0.01", "--clip-grad-norm", "1.0"]
    run_dir, _ = train(
        project, preloaded_python, tmp_path, *flags, "--accum-steps", str(accum_steps)
    )
    updates_per_epoch = -(-4 // accum_steps)  # 128 training samples / batch 32 = 4 batches
    total = 3 * updates_per_epoch
    for record in read_metrics(run_dir):
        assert record["step"] == record["epoch"] * updates_per_epoch
        expected = 0.01 * expected_cosine(record["step"], 3, total)
        assert record["lr"] == pytest.approx(expected, abs=1e-12)


def test_step_schedule_decays_each_epoch(render, preloaded_python, tmp_path):
    project = render(**BASE, mixed_precision="no", multi_gpu="none")
    flags = ["--scheduler", "step", "--step-size", "1", "--gamma", "0.5", "--warmup-epochs", "0"]
    run_dir, _ = train(project, preloaded_python, tmp_path, *flags, "--epochs", "3")
    assert [record["lr"] for record in read_metrics(run_dir)] == pytest.approx(
        [3e-3 * 0.5, 3e-3 * 0.25, 3e-3 * 0.125]
    )


def test_ddp_validation_metrics_match_a_single_process(render, preloaded_python, tmp_path):
    project = render(**BASE, mixed_precision="no", multi_gpu="ddp")
    # 32 validation samples split unevenly over 3 ranks: no sample may be dropped or doubled.
    run_dir, _ = train(project, preloaded_python, tmp_path, "--epochs", "1", processes=3)
    checkpoint = str(run_dir / "last.pt")
    evaluation = run_command(
        [*preloaded_python, "-m", f"{SLUG}.evaluate", "--checkpoint", checkpoint], project
    )
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads((run_dir / "eval_val_last.json").read_text())
    (record,) = read_metrics(run_dir)
    assert report["val_loss"] == pytest.approx(record["val_loss"], rel=1e-5)
    assert report["val_acc"] == pytest.approx(record["val_acc"], abs=1e-6)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_node_launch_on_loopback(render, preloaded_python, tmp_path):
    project = render(**BASE, mixed_precision="no", multi_gpu="ddp")
    rendezvous = ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-id=loopback"]
    rendezvous.append(f"--rdzv-endpoint=127.0.0.1:{free_port()}")
    command = train_command(preloaded_python, processes=1, nodes_flags=tuple(rendezvous))
    nodes = []
    for node in ("node_a", "node_b"):
        output = tmp_path / node
        full = [*command, *TINY, "--epochs", "2", "--output-dir", str(output), "--name", "run"]
        nodes.append(
            subprocess.Popen(
                full,
                cwd=project,
                env=project_environment(project),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:]
    logs = "".join(stderr for _, stderr in outputs)
    assert "world size 2" in logs
    assert "parameters identical on all 2 ranks" in logs
    writers = [
        node for node in ("node_a", "node_b") if (tmp_path / node / "run" / "last.pt").exists()
    ]
    assert len(writers) == 1  # only global rank 0 writes
