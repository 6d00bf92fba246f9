"""A run folder has one owner, is never written into by another run, and a failed start
leaves nothing in the way of a retry. Real processes, started at the same time."""

import json
import re
import socket
import subprocess

import torch
import yaml

from conftest import read_metrics, run_command, start_command, tiny_run, train_command

TINY = tiny_run("--deterministic", epochs=2)


def wait_for_line(process: subprocess.Popen, text: str) -> None:
    for line in process.stderr:
        if text in line:
            return
    raise AssertionError(f"the process ended without printing {text!r}")


def test_second_process_on_a_run_folder_is_refused(render, preloaded_python, tmp_path):
    project = render(logger="none", multi_gpu="none")
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    first = start_command([*command, "--epochs", "200", "--name", "shared"], project)
    wait_for_line(first, "epoch 1/200")  # the first run holds the folder and trains
    second = run_command([*command, "--name", "shared", "--resume", "auto"], project)
    first.kill()
    first.wait()
    assert second.returncode == 2
    (error,) = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    # (the training process is a child of the preloaded-python server, not `first` itself)
    assert re.search(rf"is in use by process \d+ on {re.escape(socket.gethostname())}", error)
    assert [record["epoch"] for record in read_metrics(tmp_path / "shared")][0] == 1


def test_lock_of_a_dead_process_is_taken_over(render, preloaded_python, tmp_path):
    project = render(logger="none", multi_gpu="none")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "run").mkdir()
    lock = {"pid": dead.pid, "host": socket.gethostname()}
    (tmp_path / "run" / ".lock").write_text(json.dumps(lock))
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    result = run_command([*command, "--name", "run"], project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"from process {dead.pid}, which no longer runs" in result.stderr
    assert not (tmp_path / "run" / ".lock").exists()  # released at the end


def test_failed_first_epoch_does_not_block_a_retry(render, preloaded_python, tmp_path):
    project = render(logger="tensorboard", multi_gpu="none")
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    diverging = run_command([*command, "--name", "run", "--lr", "1e30"], project)
    assert diverging.returncode == 2
    (error,) = [line for line in diverging.stderr.splitlines() if line.startswith("error:")]
    assert error in (tmp_path / "run" / "train.log").read_text()  # the error is in the log too
    assert not (tmp_path / "run" / "last.pt").exists()
    retry = run_command([*command, "--name", "run"], project)
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert [record["epoch"] for record in read_metrics(tmp_path / "run")] == [1, 2]


def test_resume_from_a_path_continues_its_own_run_or_starts_a_new_one(
    render, preloaded_python, tmp_path
):
    project = render(logger="none", multi_gpu="none")
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    first = run_command([*command, "--name", "first", "--stop-after-epochs", "1"], project)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoint = str(tmp_path / "first" / "last.pt")

    branched = run_command([*command, "--resume", checkpoint, "--name", "branch"], project)
    assert branched.returncode == 0, branched.stderr[-2000:]
    assert [record["epoch"] for record in read_metrics(tmp_path / "branch")] == [2]
    branch_config = yaml.safe_load((tmp_path / "branch" / "config.yaml").read_text())
    assert branch_config["name"] == "branch" and branch_config["resume"] == checkpoint
    first_config = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())
    continued = run_command([*command, "--resume", checkpoint], project)  # no --name
    assert continued.returncode == 0, continued.stderr[-2000:]
    assert [record["epoch"] for record in read_metrics(tmp_path / "first")] == [1, 2]
    # What the run became (no longer stopped after an epoch), begun as it was (no --resume).
    log = (tmp_path / "first" / "train.log").read_text()
    assert "config.yaml updated to this resume's flags: stop_after_epochs 1 -> (unset)" in log
    continued_config = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())
    assert continued_config == {
        key: value for key, value in first_config.items() if key != "stop_after_epochs"
    }
    branch, first_run = (
        torch.load(tmp_path / name / "last.pt", weights_only=True)["model"]
        for name in ("branch", "first")
    )
    assert all(torch.equal(branch[key], first_run[key]) for key in branch)


def test_requeued_slurm_job_takes_over_its_own_lock_but_not_another_jobs(
    render, preloaded_python, tmp_path
):
    project = render(logger="none", multi_gpu="none")
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    requeued = {"SLURM_JOB_ID": "41", "SLURM_RESTART_COUNT": "1"}
    # The job's first run was killed on another node: its pid cannot be checked from here.
    for name, job in (("own", "41"), ("other", "40")):
        (tmp_path / name).mkdir()
        lock = {"pid": 4242, "host": "node17", "slurm_job": job, "slurm_restart": 0}
        (tmp_path / name / ".lock").write_text(json.dumps(lock))
    own = run_command([*command, "--name", "own"], project, **requeued)
    assert own.returncode == 0, own.stderr[-2000:]
    assert "from process 4242, which no longer runs" in own.stderr
    other = run_command([*command, "--name", "other"], project, **requeued)
    assert other.returncode == 2
    (error,) = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert "is in use by process 4242 on node17 (Slurm job 40)" in error
    assert sorted(path.name for path in (tmp_path / "other").iterdir()) == [".lock"]


def test_relaunched_command_continues_its_own_last_checkpoint(render, preloaded_python, tmp_path):
    """A requeued job (or restarted torchrun worker) reruns the original command line: it must
    continue the run folder's last.pt, not refuse the folder or branch again."""
    project = render(logger="none", multi_gpu="none")
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    source = run_command([*command, "--name", "source", "--stop-after-epochs", "1"], project)
    assert source.returncode == 0, source.stderr[-2000:]
    branch = [*command, "--name", "branch", "--resume", str(tmp_path / "source" / "last.pt")]
    first = run_command([*branch, "--stop-after-epochs", "1"], project, SLURM_JOB_ID="7")
    assert first.returncode == 0, first.stderr[-2000:]
    refused = run_command(branch, project, SLURM_JOB_ID="7")  # not relaunched: still refused
    assert refused.returncode == 2 and "holds another run" in refused.stderr
    rerun = run_command(branch, project, SLURM_JOB_ID="7", SLURM_RESTART_COUNT="1")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resumed from {tmp_path}/branch/last.pt in epoch 3" in rerun.stderr
    assert [record["epoch"] for record in read_metrics(tmp_path / "branch")] == [2]
