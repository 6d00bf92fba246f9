"""Ending a run early without losing work: preemption signals, Ctrl-C and a time budget.

SIGTERM (sent by Slurm, Kubernetes and cloud schedulers before they kill a job), SIGINT
(Ctrl-C) and SIGUSR1 (Slurm's warning before a time limit, with `--signal=USR1@SECONDS`) only
set a flag, from the moment the command starts (a signal while the flags are checked or
torch loads is kept, not fatal). The training loop looks at it after every optimizer update;
all ranks agree, save a mid-epoch last.pt and exit with code 75 (errors.StoppedEarly).
`--resume auto` then continues inside that epoch.

Signals after the first are ignored until the run has saved and exited: a terminal sends
Ctrl-C to every process of the command, and torchrun's agent passes the signal on to its
workers, so each worker gets it twice; a second Ctrl-C that ended the run would end every
Ctrl-C before its save. To quit without saving, kill the process: saves are atomic, so the
last checkpoint stays intact.
"""

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequest:
    """Whether the run should stop now, and why."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.deadline: float | None = None

    def start_budget(self, max_minutes: float | None) -> None:
        """Stop `max_minutes` from now (None: no time budget)."""
        self.deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes

    def on_signal(self, signum: int, frame) -> None:
        if self.reason is None:  # the first stop names the reason; repeats change nothing
            self.reason = signal.Signals(signum).name

    def requested(self) -> bool:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "the --max-minutes budget"
        return self.reason is not None


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Listen for the stop signals while the run lasts; the previous handlers come back after."""
    request = StopRequest()
    previous = {signum: signal.signal(signum, request.on_signal) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave stopping to the training process, which shuts them down (a
    terminal's Ctrl-C reaches them too)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
