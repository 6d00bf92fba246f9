"""The generated slurm/train.sbatch on a real single-node Slurm (see slurm_cluster.py): a job
trains two DDP processes to the end; a job signalled mid-epoch saves, requeues itself and ends
bit-identical to the uninterrupted job; a job near its time limit does the same on Slurm's own
warning signal; mistakes end the job with one line."""

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import SCRATCH, read_metrics, run_command
from options import SLUG
from slurm_cluster import FINAL_STATES, SlurmCluster, SlurmUnavailable
from test_preemption import without_timings

pytestmark = pytest.mark.xdist_group("slurm")

DIGITS = ["--dataset", "digits", "--batch-size", "8", "--epochs", "3", "--deterministic"]
DIGITS += ["--no-progress", "--seed", "11"]


@pytest.fixture(autouse=True)
def one_worker_runs_them_all(request):
    """Two workers would start two clusters, whose jobs compete for the two cores."""
    if os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("dist") == "loadgroup":
        assert request.node.nodeid.endswith("@slurm"), (
            "pytest-xdist did not group the Slurm tests onto one worker (its xdist_group marks "
            "need a pytest that keeps Node._nodeid): check the pinned pytest"
        )


@pytest.fixture(scope="module")
def cluster():
    # A short path: munge's unix socket lives in it.
    folder = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    slurm = SlurmCluster(folder)
    try:
        slurm.start()
    except SlurmUnavailable as reason:
        slurm.stop()
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no Slurm here: {reason}")
    yield slurm
    slurm.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def project(render, tmp_path_factory) -> Path:
    """A copy of the rendered project: jobs write their output files into it, and other tests
    check the rendered files."""
    rendered = render(logger="none", mixed_precision="no", multi_gpu="ddp", onnx_export="no")
    return Path(shutil.copytree(rendered, tmp_path_factory.mktemp("slurm-project") / "project"))


def job_environment(project: Path) -> dict:
    """Two CPU processes per node, the real interpreter (jobs do not use the fork server)."""
    return {
        "PYTHONPATH": str(project / "src"),
        "PYTHON": sys.executable,
        "PROCS_PER_NODE": "2",
        "XDG_CACHE_HOME": str(SCRATCH / "cache"),
    }


def submit(cluster, project: Path, *arguments: str, options=()) -> str:
    script = project / "slurm" / "train.sbatch"
    return cluster.submit(
        script, *arguments, cwd=project, options=options, env=job_environment(project)
    )


def job_output(project: Path, job_id: str) -> str:
    path = project / f"{SLUG}-{job_id}.out"
    return path.read_text() if path.exists() else ""


def wait_for_output(cluster, project: Path, job_id: str, text: str, timeout: float = 240) -> None:
    """Until the job prints `text`, or ends (a passing state such as COMPLETING is waited out)."""
    job = cluster.wait_for(
        job_id,
        lambda job: text in job_output(project, job_id) or job["JobState"] in FINAL_STATES,
        timeout,
        f"printed {text!r}",
    )
    assert text in job_output(project, job_id), (
        job["JobState"],
        job_output(project, job_id)[-3000:],
    )


def completed_after(cluster, job_id: str, restarts: int, timeout: float = 300) -> dict:
    """Wait until the job COMPLETED on its run number `restarts` (0: never requeued)."""
    return cluster.wait_for(
        job_id,
        lambda job: (
            job["JobState"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
            and job["Restarts"] == str(restarts)
        ),
        timeout,
        f"completed after {restarts} requeue(s)",
    )


def assert_same_run(expected: Path, actual: Path) -> None:
    expected_state = torch.load(expected / "last.pt", weights_only=True)
    actual_state = torch.load(actual / "last.pt", weights_only=True)
    different = [
        key
        for key, value in expected_state["model"].items()
        if not torch.equal(value, actual_state["model"][key])
    ]
    assert different == []
    assert without_timings(read_metrics(expected)) == without_timings(read_metrics(actual))


@pytest.fixture(scope="module")
def uninterrupted(cluster, project, tmp_path_factory) -> tuple[str, Path]:
    """A job that trains to the end untouched: the reference for the others."""
    output_dir = tmp_path_factory.mktemp("slurm-runs")
    job_id = submit(cluster, project, *DIGITS, "--output-dir", str(output_dir), "--name", "ref")
    job = completed_after(cluster, job_id, restarts=0)
    assert job["JobState"] == "COMPLETED", job_output(project, job_id)[-3000:]
    return job_id, output_dir


def test_slurm_job_trains_two_processes_to_the_end(project, uninterrupted):
    job_id, output_dir = uninterrupted
    output = job_output(project, job_id)
    assert f"job {job_id} on 1 node(s) x 2 process(es), restart 0" in output
    assert "training on cpu, world size 2" in output
    assert "parameters identical on all 2 ranks" in output
    run_dir = output_dir / "ref"
    assert {"config.yaml", "train.log", "metrics.jsonl", "last.pt", "best.pt"} <= {
        path.name for path in run_dir.iterdir()
    }
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1, 2, 3]
    assert not (run_dir / ".lock").exists()


STOPS = {
    # Slurm's warning before a time limit, sent on demand: the script saves and requeues.
    "USR1 to the batch script": (
        ["scancel", "--signal=USR1", "--batch"],
        "SIGUSR1",
        "USR1 received",
    ),
    # The same warning sent to the job's steps (a site's `--signal=USR1@N` without `B:`): the
    # batch script never sees it, yet requeues once the step says it stopped on USR1.
    "USR1 to the job's steps": (
        ["scancel", "--signal=USR1"],
        "SIGUSR1",
        "the training step stopped on USR1",
    ),
    # What preemption in requeue mode does: TERM to every process, then Slurm requeues.
    "scontrol requeue (TERM)": (["scontrol", "requeue"], "SIGTERM", "TERM received"),
}


# The fast tier keeps one trial: the steps' USR1, the path the batch script does not see.
FAST_STOP = "USR1 to the job's steps"


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(stop, id=name, marks=() if name == FAST_STOP else pytest.mark.slow)
        for name, stop in STOPS.items()
    ],
)
def test_slurm_job_signalled_mid_epoch_requeues_and_finishes_exactly(
    cluster, project, uninterrupted, tmp_path, stop
):
    command, signal_name, script_says = stop
    job_id = submit(cluster, project, *DIGITS, "--output-dir", str(tmp_path), "--name", "cut")
    wait_for_output(cluster, project, job_id, "epoch 1/3")
    cluster.run([*command, job_id])
    job = completed_after(cluster, job_id, restarts=1)
    output = job_output(project, job_id)
    assert job["JobState"] == "COMPLETED", output[-3000:]
    assert f"job {job_id}: {script_says}" in output
    assert re.search(rf"stopped at epoch 2, step \d+ \({signal_name}\)", output), output[-3000:]
    assert f"job {job_id} on 1 node(s) x 2 process(es), restart 1" in output
    resumed = re.search(r"resumed from \S+/cut/last.pt in epoch 2 after (\d+) batches", output)
    assert resumed and int(resumed.group(1)) > 0, output[-3000:]
    assert_same_run(uninterrupted[1] / "ref", tmp_path / "cut")


def test_cancelled_slurm_job_saves_stays_cancelled_and_continues_when_resubmitted(
    cluster, project, uninterrupted, tmp_path
):
    arguments = [*DIGITS, "--output-dir", str(tmp_path), "--name", "cancelled"]
    job_id = submit(cluster, project, *arguments)
    wait_for_output(cluster, project, job_id, "epoch 1/3")
    cluster.run(["scancel", job_id])
    job = cluster.wait_until_finished(job_id)
    output = job_output(project, job_id)
    assert job["JobState"] == "CANCELLED" and job["Restarts"] == "0", output[-3000:]
    assert re.search(r"stopped at epoch 2, step \d+ \(SIGTERM\)", output), output[-3000:]
    stopped = torch.load(tmp_path / "cancelled" / "last.pt", weights_only=True)
    assert stopped["batches_done"] > 0
    again = submit(cluster, project, *arguments, "--resume", "auto")
    job = completed_after(cluster, again, restarts=0)
    assert job["JobState"] == "COMPLETED", job_output(project, again)[-3000:]
    assert_same_run(uninterrupted[1] / "ref", tmp_path / "cancelled")


def seconds_run(job: dict) -> int:
    """A running job's RunTime (`[D-]HH:MM:SS`) in seconds."""
    days, _, clock = job["RunTime"].rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


@pytest.mark.slow
def test_slurm_job_near_its_time_limit_saves_and_requeues(cluster, project, tmp_path):
    # Slurm sends the warning when the time left drops below 170 s, checking every 30 s. Cutting
    # the limit once training runs leaves 120-180 s: the warning comes within 40 s, mid-training
    # however long start-up took (a warning before the workers exist only restarts the job).
    arguments = [*DIGITS[:-4], "--epochs", "30", "--seed", "11", "--no-progress"]
    options = ["--time=10", "--signal=B:USR1@170"]
    job_id = submit(
        cluster,
        project,
        *arguments,
        "--output-dir",
        str(tmp_path),
        "--name",
        "long",
        options=options,
    )
    wait_for_output(cluster, project, job_id, "epoch 1/30")
    minutes_run = -(-seconds_run(cluster.job(job_id)) // 60)
    cluster.run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={minutes_run + 2}"])
    wait_for_output(cluster, project, job_id, f"job {job_id}: USR1 received", timeout=120)
    cluster.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=10"])  # for the rerun
    job = completed_after(cluster, job_id, restarts=1, timeout=400)
    output = job_output(project, job_id)
    assert job["JobState"] == "COMPLETED", output[-3000:]
    stopped = re.search(r"stopped at epoch (\d+), step (\d+) \(SIGUSR1\)", output)
    assert stopped, output[-3000:]
    assert f"resumed from {tmp_path}/long/last.pt in epoch {stopped.group(1)}" in output
    assert [record["epoch"] for record in read_metrics(tmp_path / "long")] == list(range(1, 31))


def folder_another_job_holds(output_dir: Path) -> list[str]:
    run_dir = output_dir / "held"
    run_dir.mkdir()
    lock = {"pid": 4242, "host": "node17", "slurm_job": "99", "slurm_restart": 0}
    (run_dir / ".lock").write_text(json.dumps(lock))
    return ["--name", "held"]


def checkpoint_of_other_flags(output_dir: Path) -> list[str]:
    """The uninterrupted job's folder, continued with another image size."""
    return ["--name", "ref", "--resume", "auto", "--image-size", "16"]


MISTAKES = {
    "run folder another job holds": (
        folder_another_job_holds,
        "is in use by process 4242 on node17 (Slurm job 99): wait for it to finish",
    ),
    "checkpoint that does not match": (
        checkpoint_of_other_flags,
        "was trained with --image-size 8: resume with the same flags",
    ),
    "bad flag value": (lambda output_dir: ["--epochs", "0"], "--epochs"),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_slurm_job_with_a_mistake_fails_in_one_line(cluster, project, uninterrupted, mistake):
    make_mistake, expected = mistake
    output_dir = uninterrupted[1]
    arguments = make_mistake(output_dir)
    before = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    job_id = submit(cluster, project, *DIGITS, "--output-dir", str(output_dir), *arguments)
    job = completed_after(cluster, job_id, restarts=0)
    output = job_output(project, job_id)
    assert job["JobState"] == "FAILED" and job["ExitCode"] != "0:0", output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    after = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    assert after == before


@pytest.mark.parametrize("has_sbatch", [True, False], ids=["sbatch", "no sbatch on PATH"])
def test_sbatch_script_run_outside_slurm_says_how_to_submit(project, tmp_path, has_sbatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    if has_sbatch:
        (tools / "sbatch").write_text("#!/bin/sh\n")
        (tools / "sbatch").chmod(0o755)
    output_dir = tmp_path / "runs"
    result = run_command(
        ["/bin/bash", "slurm/train.sbatch", *DIGITS, "--output-dir", str(output_dir)],
        project,
        PATH=str(tools),
        SLURM_JOB_ID="",
    )
    hint = "" if has_sbatch else " (sbatch is not on PATH here: load Slurm first)"
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: slurm/train.sbatch runs inside a Slurm job: submit it with "
        f"`sbatch slurm/train.sbatch ARGS`{hint}"
    ]
    assert not output_dir.exists()
