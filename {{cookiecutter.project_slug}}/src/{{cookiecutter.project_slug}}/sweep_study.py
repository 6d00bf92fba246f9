"""A sweep's Optuna study: kept in SQLite in the study folder, so that the same sweep command
continues it after a crash or a kill; trials a killed sweep left running count as failed."""

import argparse
import fcntl
import socket
from pathlib import Path

import optuna
from optuna.distributions import check_distribution_compatibility
from optuna.trial import TrialState

from .errors import UserError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_study(args: argparse.Namespace) -> optuna.Study:
    try:
        args.folder.joinpath("logs").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create {args.folder} ({error.strerror}): pick a writable --output-dir"
        ) from None
    direction = "maximize" if args.mode == "max" else "minimize"
    # Two sweeps started at once would both create the database's tables: one would fail.
    with open(args.folder / "study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Trials in threads write to the file at once: wait for the lock instead of failing.
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{(args.folder / 'study.db').absolute()}",
            engine_kwargs={"connect_args": {"timeout": 60}},
        )
        study = optuna.create_study(
            storage=storage, study_name=args.study, direction=direction, load_if_exists=True
        )
    if study.direction.name.lower() != direction:
        raise UserError(
            f"study {args.folder} was made to {study.direction.name.lower()} the monitored "
            f"metric, this command would {direction} {args.monitor}: pass --study NEW"
        )
    check_space_fits(study, args)
    # Seeded alike after a restart, the sampler would draw the first trials' values again.
    seed = args.seed + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    study.pruner = optuna.pruners.NopPruner()
    if args.pruner == "median":
        warmup = args.pruner_warmup_epochs + 1  # epochs are reported from 1
        study.pruner = optuna.pruners.MedianPruner(
            n_startup_trials=args.pruner_startup_trials, n_warmup_steps=warmup
        )
    return study


def check_space_fits(study: optuna.Study, args: argparse.Namespace) -> None:
    """Optuna refuses a parameter whose kind, log scale or choices differ from its earlier
    trials'; say so before any trial starts."""
    for trial in study.get_trials(deepcopy=False):
        for name, earlier in trial.distributions.items():
            if name not in args.space.distributions:
                continue
            try:
                check_distribution_compatibility(earlier, args.space.distributions[name])
            except ValueError:
                raise UserError(
                    f"--space: {name} differs from how study {args.folder} searched it "
                    f"({earlier}): keep its type, log and choices, or pass --study NEW"
                ) from None


def process_identity(pid: int) -> str | None:
    """host:pid:start time of a live process (None: no such process), so that a process
    that got the pid of a dead sweep does not pass for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if stat[0] in ("Z", "X") else f"{socket.gethostname()}:{pid}:{stat[19]}"


def fail_abandoned_trials(study: optuna.Study) -> None:
    """A sweep that was killed leaves its trials RUNNING forever: they count as failed."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("sweep")
        if owner is None or not owner.startswith(f"{socket.gethostname()}:"):
            continue  # another machine's sweep: whether it still runs cannot be told from here
        if process_identity(int(owner.split(":")[1])) != owner:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            print(f"trial {trial.number} was left running by a sweep that ended: marked failed")


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))
