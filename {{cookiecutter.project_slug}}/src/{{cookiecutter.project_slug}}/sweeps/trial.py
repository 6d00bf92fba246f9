"""A sweep trial's training process: an ordinary train run in a child process that dies with
the sweep, watched epoch by epoch so the pruner can stop it."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from optuna.trial import Trial

PACKAGE = __package__.rpartition(".")[0]
POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1  # from linux/prctl.h


def start_training(argv: list[str], output, parallel: int) -> subprocess.Popen:
    """`python -m <package>.train ARGV`, its output to `output`."""
    environment = dict(os.environ)
    if parallel > 1 and "OMP_NUM_THREADS" not in environment:  # trials share the cores
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        environment["OMP_NUM_THREADS"] = str(max(1, cores // parallel))
    return subprocess.Popen(
        [sys.executable, "-m", f"{PACKAGE}.train", *argv],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,  # Ctrl-C reaches the sweep only, which stops trials with SIGTERM
        preexec_fn=die_with_parent(os.getpid()) if sys.platform == "linux" else None,
    )


def die_with_parent(parent: int):
    """A killed sweep leaves no training behind: the kernel sends its children SIGTERM, on
    which a run saves last.pt and exits."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child

    def set_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the sweep died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_signal


def watch(
    process: subprocess.Popen,
    trial: Trial,
    metrics: Path,
    monitor: str,
    stopping: threading.Event,
) -> tuple[list[float], bool]:
    """Report each epoch's monitored value as the run appends it to metrics.jsonl; stop the run
    (SIGTERM: it saves last.pt) when the pruner says so or the sweep stops. Returns the values
    and whether the trial was pruned."""
    values, pruned, signalled = [], False, False
    while True:
        exited = process.poll() is not None  # before reading: a finished run's last epoch is read
        new = epoch_values(metrics, monitor)[len(values) :]
        for epoch, value in new:
            trial.report(value, epoch)
            values.append(value)
        pruned = pruned or bool(new) and trial.should_prune()
        if exited:
            return values, pruned
        if (pruned or stopping.is_set()) and not signalled:
            process.send_signal(signal.SIGTERM)
            signalled = True
        try:
            process.wait(POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass


def epoch_values(metrics: Path, monitor: str) -> list[tuple[int, float]]:
    """(epoch, monitored value) of each complete line of a run's metrics.jsonl so far."""
    try:
        lines = metrics.read_text().split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [(record["epoch"], record[monitor]) for record in map(json.loads, lines)]


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
