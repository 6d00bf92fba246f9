"""kill -9 at any moment, even inside a checkpoint save, loses nothing: resuming with
--resume auto ends with exactly the weights of an uninterrupted run."""

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import project_environment, read_metrics, run_command, tiny_run, train_command

RUN = tiny_run(
    "--fake-samples", "224", "--deterministic", "--seed", "11", "--name", "run", epochs=2
)
TIMINGS = {"samples_per_second", "epoch_seconds"}
HOLD_SAVE_ENV = "CHECKPOINT_TEST_HOLD_FILE"


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Wait until `path` exists; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            return path.exists()
        time.sleep(0.01)
    return True


def start(project: Path, command: list[str], scratch: Path, **env: str) -> tuple:
    pid_file = scratch / "worker.pid"
    pid_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        command,
        cwd=project,
        env=project_environment(project, FORKSERVER_PID_FILE=str(pid_file), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_for_file(pid_file, process), process.communicate()[1]
    return process, int(pid_file.read_text())


def kill(process: subprocess.Popen, worker: int) -> None:
    try:
        os.kill(worker, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it had already finished
    process.communicate(timeout=60)


def kill_at_a_random_moment(project, command, scratch, rng: random.Random) -> str:
    process, worker = start(project, command, scratch)
    delay = rng.uniform(0.0, 1.5)
    try:
        process.communicate(timeout=delay)
        return "finished before the kill"
    except subprocess.TimeoutExpired:
        kill(process, worker)
        return f"killed after {delay:.2f} s"


def kill_inside_a_save(project, command, scratch, rng: random.Random) -> str:
    """Finish some epochs, then kill while the next save has written but not yet renamed."""
    epochs_done = rng.randint(0, 1)
    if epochs_done:
        result = run_command([*command, "--stop-after-epochs", str(epochs_done)], project)
        assert result.returncode == 0, result.stderr[-2000:]
    hold = scratch / "holding"
    hold.unlink(missing_ok=True)
    process, worker = start(
        project, [*command, "--resume", "auto"], scratch, **{HOLD_SAVE_ENV: str(hold)}
    )
    assert wait_for_file(hold, process), process.communicate()[1]
    kill(process, worker)
    return f"killed inside the save after epoch {epochs_done + 1}"


def final_state(run_dir: Path) -> tuple[dict, list[dict]]:
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    metrics = [
        {key: value for key, value in record.items() if key not in TIMINGS}
        for record in read_metrics(run_dir)
    ]
    return weights, metrics


@pytest.mark.parametrize(
    "trials", [pytest.param(4, id="quick"), pytest.param(20, id="full", marks=pytest.mark.slow)]
)
def test_kill_9_then_resume_auto_is_exact(
    render, preloaded_python, tmp_path, trials, record_property
):
    project = render(logger="none", mixed_precision="no", multi_gpu="none", onnx_export="no")
    reference_dir = tmp_path / "reference"
    result = run_command(
        [*train_command(preloaded_python), *RUN, "--output-dir", str(reference_dir)], project
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected_weights, expected_metrics = final_state(reference_dir / "run")

    survived, notes = 0, []
    for trial in range(trials):
        rng = random.Random(trial)
        output = tmp_path / f"trial{trial}"
        command = [*train_command(preloaded_python), *RUN, "--output-dir", str(output)]
        fault = kill_inside_a_save if trial % 3 == 0 else kill_at_a_random_moment
        note = fault(project, command, tmp_path, rng)
        last = output / "run" / "last.pt"
        if last.exists():
            torch.load(last, weights_only=True)  # the checkpoint left behind always loads
        resumed = run_command([*command, "--resume", "auto"], project)
        assert resumed.returncode == 0, f"trial {trial} ({note}): {resumed.stderr[-2000:]}"
        weights, metrics = final_state(output / "run")
        intact = metrics == expected_metrics and all(
            torch.equal(weights[key], expected_weights[key]) for key in expected_weights
        )
        survived += intact
        notes.append(f"trial {trial}: {note}: {'intact' if intact else 'DIFFERENT'}")
    record_property("kill_9_trials", (survived, trials))
    assert survived == trials, "\n".join(notes)
