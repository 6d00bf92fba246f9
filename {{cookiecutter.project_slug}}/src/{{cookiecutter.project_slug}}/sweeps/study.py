"""A sweep's Optuna study: kept in SQLite in the study folder, so that the same sweep command
continues it after a crash or a kill; trials a killed sweep left running count as failed. The
study records the train flags and search space it was started with, and continues only with
those, so that its trials compare."""

import argparse
import fcntl
import socket
from pathlib import Path

import optuna
from optuna.distributions import (
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import TrialState

from ..errors import UserError
from ..runs.folder import RUN_FILES, present

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_study(args: argparse.Namespace) -> optuna.Study:
    refuse_a_run_folder(args.folder)
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
        check_trials_train_alike(study, args)
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


def refuse_a_run_folder(folder: Path) -> None:
    held = present(folder, RUN_FILES)
    if held:
        raise UserError(
            f"{folder} is a train run's folder ({', '.join(held)}), not a sweep's study: pass "
            "another --study"
        )


def check_trials_train_alike(study: optuna.Study, args: argparse.Namespace) -> None:
    """The first sweep of a study records its train flags and search space; a later sweep with
    others is refused, since its trials would not compare with the earlier ones."""
    flags = {f"--{key.replace('_', '-')}": value for key, value in args.fixed_flags.items()}
    space = {name: distribution_to_json(value) for name, value in args.space.distributions.items()}
    recorded = study.user_attrs
    if not {"train_flags", "space"} <= recorded.keys():  # a new study, or one from before
        check_space_fits(study, args)
        study.set_user_attr("train_flags", flags)
        study.set_user_attr("space", space)
        return
    # The space first: a flag it stops searching is a train flag that appears.
    searched = {name: json_to_distribution(value) for name, value in recorded["space"].items()}
    if changed := differences(searched, args.space.distributions):
        raise UserError(
            f"--space differs from the one study {args.folder} searched ({changed}): pass that "
            "space again, or --study NEW for a study of this one"
        )
    if changed := differences(recorded["train_flags"], flags):
        raise UserError(
            f"study {args.folder} was run with other train flags ({changed}): pass the same "
            "flags after --, or --study NEW for a study of these"
        )


def differences(then: dict, now: dict) -> str:
    """Each name whose value differs, as "name: then X, now Y"; "" when none does."""
    names = [*then, *(name for name in now if name not in then)]
    return "; ".join(
        f"{name}: then {shown(then.get(name))}, now {shown(now.get(name))}"
        for name in names
        if then.get(name) != now.get(name)
    )


def shown(value) -> str:
    return "unset" if value is None else str(value)


def check_space_fits(study: optuna.Study, args: argparse.Namespace) -> None:
    """Optuna refuses a parameter whose kind, log scale or choices differ from its earlier
    trials'; say so before any trial starts (in a study that did not record its space)."""
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
