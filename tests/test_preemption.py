"""Preemption is routine: a real signal (or the time budget) sent to a real training process
saves a mid-epoch checkpoint, and `--resume auto` ends bit-identical to an uninterrupted run;
a worker torchrun restarts (--max-restarts) resumes by itself, just as exactly."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import (
    NO_INSIGHT,
    project_environment,
    read_metrics,
    run_command,
    start_command,
    tiny_run,
    train_command,
)
from options import SLUG

DIGITS = ["--dataset", "digits", "--batch-size", "8", "--epochs", "3", "--deterministic"]
DIGITS += ["--no-progress", "--seed", "11", *NO_INSIGHT]
TIMINGS = {"samples_per_second", "epoch_seconds"}
STOPPED_EXIT_CODE = 75

CASES = {
    "SIGTERM, no loader workers": ({"multi_gpu": "none"}, ["--num-workers", "0"], 1, "SIGTERM"),
    "SIGUSR1, 2 loader workers, AMP": (
        {"multi_gpu": "none", "mixed_precision": "yes"},
        ["--num-workers", "2", "--amp", "--mixup-alpha", "0.2", "--accum-steps", "2"]
        + ["--batch-size", "16", "--epochs", "2"],  # bfloat16 on CPU is slow: fewer steps
        1,
        "SIGUSR1",
    ),
    # Ctrl-C, pressed twice: a terminal sends SIGINT to the loader workers too (so does the
    # fork server's client: to the whole process group), and the second press must not stop
    # the save.
    "SIGINT twice (Ctrl-C again while stopping), 2 loader workers": (
        {"multi_gpu": "none"},
        ["--num-workers", "2", "--epochs", "2"],
        1,
        "SIGINT",
    ),
    "SIGTERM to torchrun, 2 DDP processes, EMA, balanced sampling": (
        {"multi_gpu": "ddp"},
        ["--num-workers", "0", "--ema", "0.9", "--balanced-sampling", "--channels-last"],
        2,
        "SIGTERM",
    ),
}


def without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in records]


def stop_when_training(
    project, command: list[str], signum: int, presses: int = 1
) -> tuple[int, str]:
    """Start the command, send `signum` `presses` times in a row once epoch 1 is done, return
    (exit code, stderr)."""
    process = start_command(command, project)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "epoch 1/" in line:
            for _ in range(presses):
                process.send_signal(signum)
            break
    lines += process.stderr.readlines()
    return process.wait(timeout=300), "".join(lines)


def assert_same_run(straight, resumed) -> None:
    expected = torch.load(straight / "last.pt", weights_only=True)
    actual = torch.load(resumed / "last.pt", weights_only=True)
    different = [
        k for k in expected["model"] if not torch.equal(expected["model"][k], actual["model"][k])
    ]
    assert different == []
    if "ema" in expected:
        averaged = expected["ema"]["weights"]
        assert all(torch.equal(averaged[k], actual["ema"]["weights"][k]) for k in averaged)
        assert actual["ema"]["updates"] == expected["ema"]["updates"]
    assert without_timings(read_metrics(straight)) == without_timings(read_metrics(resumed))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_signal_saves_mid_epoch_and_resume_is_exact(render, preloaded_python, tmp_path, case):
    answers, flags, processes, signal_name = case
    project = render(logger="none", onnx_export="no", **answers)
    command = [*train_command(preloaded_python, processes), *DIGITS, *flags]
    command += ["--output-dir", str(tmp_path)]
    straight = run_command([*command, "--name", "straight"], project)
    assert straight.returncode == 0, straight.stderr[-2000:]

    presses = 2 if signal_name == "SIGINT" else 1
    exit_code, log = stop_when_training(
        project, [*command, "--name", "cut"], getattr(signal, signal_name), presses
    )
    assert f"({signal_name}): continue with --resume auto" in log, log[-2000:]
    if processes == 1:
        assert exit_code == STOPPED_EXIT_CODE and "Traceback" not in log
    else:  # torchrun's agent reports the signal with its own traceback and exits 1
        assert exit_code == 1
        assert log.count("SignalException: Process") == 1
        assert f"/{SLUG}/" not in log  # the agent's traceback only, none from the workers
    stopped = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert stopped["batches_done"] > 0  # inside an epoch
    resumed = run_command([*command, "--name", "cut", "--resume", "auto"], project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        f"in epoch {stopped['epoch'] + 1} after {stopped['batches_done']} batches" in resumed.stderr
    )
    assert "Logging error" not in resumed.stderr

    assert_same_run(tmp_path / "straight", tmp_path / "cut")


def test_time_budget_stops_like_a_signal(render, preloaded_python, tmp_path):
    project = render(logger="none", onnx_export="no", multi_gpu="none")
    command = [*train_command(preloaded_python), *DIGITS, "--output-dir", str(tmp_path)]
    straight = run_command([*command, "--name", "straight"], project)
    assert straight.returncode == 0, straight.stderr[-2000:]
    budget = run_command([*command, "--name", "cut", "--max-minutes", "0.02"], project)
    assert budget.returncode == STOPPED_EXIT_CODE, budget.stderr[-2000:]
    assert "(the --max-minutes budget): continue with --resume auto" in budget.stderr
    resumed = run_command([*command, "--name", "cut", "--resume", "auto"], project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(tmp_path / "straight", tmp_path / "cut")


def worker_pids_by_rank(agent_pid: int) -> dict[int, int]:
    """The torchrun agent's worker processes, by their RANK."""
    children = Path(f"/proc/{agent_pid}/task/{agent_pid}/children").read_text().split()
    workers = {}
    for pid in map(int, children):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        ranks = [entry[5:] for entry in environ if entry.startswith(b"RANK=")]
        if ranks:
            workers[int(ranks[0])] = pid
    return workers


def test_torchrun_restarts_after_a_killed_worker_and_the_run_ends_exactly(
    render, preloaded_python, tmp_path
):
    project = render(logger="none", onnx_export="no", mixed_precision="no", multi_gpu="ddp")
    arguments = [*DIGITS, "--num-workers", "0", "--output-dir", str(tmp_path)]
    straight = run_command(
        [*train_command(preloaded_python, 2), *arguments, "--name", "straight"], project
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    # Real interpreters here (not the fork server), so the workers are the agent's children.
    elastic = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    elastic += ["--nproc-per-node=2", "--max-restarts=1", "-m", f"{SLUG}.train"]
    process = start_command([*elastic, *arguments, "--name", "elastic"], project)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "epoch 1/3" in line:
            os.kill(worker_pids_by_rank(process.pid)[1], signal.SIGKILL)
            break
    lines += process.stderr.readlines()
    log = "".join(lines)
    assert process.wait(timeout=300) == 0, log[-3000:]
    assert "epoch 1/3" in log and log.count("epoch 3/3") == 1
    assert f"resumed from {tmp_path}/elastic/last.pt in epoch 2, step" in log, log[-3000:]
    assert_same_run(tmp_path / "straight", tmp_path / "elastic")


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler installed for `signum` (SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


# Holds a process at its first `import torch` until the file TORCH_IMPORT_GATE names exists.
TORCH_IMPORT_GATE = """\
import importlib.abc, os, sys, time

class Gate(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            gate = os.environ["TORCH_IMPORT_GATE"]
            open(gate + ".waiting", "w").close()
            while not os.path.exists(gate):
                time.sleep(0.01)
        return None

sys.meta_path.insert(0, Gate())
"""


def test_signal_while_torch_still_loads_stops_after_the_first_step(
    render, preloaded_python, tmp_path
):
    project = render(logger="none", onnx_export="no", mixed_precision="no", multi_gpu="none")
    arguments = [*DIGITS, "--output-dir", str(tmp_path / "runs")]
    straight = run_command(
        [*train_command(preloaded_python), *arguments, "--name", "straight"], project
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    (gate_dir / "sitecustomize.py").write_text(TORCH_IMPORT_GATE)
    gate = tmp_path / "open"
    process = subprocess.Popen(
        [sys.executable, "-m", f"{SLUG}.train", *arguments, "--name", "cut"],
        cwd=project,
        env=project_environment(
            project,
            PYTHONPATH=f"{gate_dir}{os.pathsep}{project / 'src'}",
            TORCH_IMPORT_GATE=str(gate),
            OMP_NUM_THREADS="1",  # as in the preloaded runs: results depend on thread count
            MKL_NUM_THREADS="1",
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    while not Path(f"{gate}.waiting").exists():  # about to import torch
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)
    assert catches(process.pid, signal.SIGUSR1)
    process.send_signal(signal.SIGUSR1)
    gate.touch()
    log = process.stderr.read()
    assert process.wait(timeout=300) == STOPPED_EXIT_CODE, log[-2000:]
    assert "stopped at epoch 1, step 1 (SIGUSR1): continue with --resume auto" in log, log[-2000:]
    resumed = run_command(
        [*train_command(preloaded_python), *arguments, "--name", "cut", "--resume", "auto"],
        project,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "in epoch 1 after 1 batches" in resumed.stderr
    assert_same_run(tmp_path / "runs" / "straight", tmp_path / "runs" / "cut")


def test_rerun_after_an_attempt_that_saved_nothing_draws_only_its_own_points(
    render, preloaded_python, tmp_path
):
    """An attempt that dies before its first checkpoint (here: a diverging --lr) leaves event
    files; the same command run again starts afresh there, and TensorBoard shows its points
    only, each step once."""
    project = render(logger="tensorboard", onnx_export="no", mixed_precision="no", multi_gpu="none")
    command = [*train_command(preloaded_python), *tiny_run("--log-every", "1", "--name", "run")]
    command += ["--output-dir", str(tmp_path)]
    failed = run_command([*command, "--lr", "1e30"], project)
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert any((tmp_path / "run" / "tensorboard").iterdir())  # what the dead attempt drew
    rerun = run_command(command, project)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    losses = events.Scalars("loss/train_step")
    assert [point.step for point in losses] == [1, 2, 3, 4]
    assert all(math.isfinite(point.value) for point in losses)
    assert len(events.Images("inputs/train_batch")) == 1
