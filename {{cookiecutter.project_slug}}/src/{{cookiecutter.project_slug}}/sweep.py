"""`python -m {{ cookiecutter.project_slug }}.sweep`: search train flags with Optuna (see --help).

Every trial is an ordinary train run in a child process, with its run folder at
<output-dir>/<study>/trial-NNNN. The study is <output-dir>/<study>/study.db (SQLite): the same
command started again continues it, and a finished trial is never run again.
"""

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import optuna
import yaml
from optuna.trial import Trial, TrialState

from .config.flags import (
    ConfigParser,
    DefaultsHelpFormatter,
    non_negative_int,
    positive_int,
    run_name,
)
from .config.parser import build_parser as build_train_parser
from .config.parser import parse_config
from .config.schema import Config
from .errors import StoppedEarly, UserError, run_reporting_user_errors
from .sweeps.space import SearchSpace, load_space
from .sweeps.study import fail_abandoned_trials, finished_count, open_study, process_identity
from .sweeps.trial import POLL_SECONDS, last_line, start_training, watch
from .training.early_stopping import resolve_mode

MAX_FAILURES_IN_A_ROW = 3
STOPPED = StoppedEarly.exit_code  # a train run that saved and exited on SIGTERM
SET_BY_SWEEP = ("output_dir", "name", "resume")  # train flags each trial gets from the sweep
# Train flags that change how a trial runs, not what it learns: a continued study may change them.
HOW_IT_RUNS = ("no_progress", "device", "num_workers", "log_every")


def build_parser() -> ConfigParser:
    parser = ConfigParser(
        prog="sweep",
        description="Search train flags with Optuna; each trial is a train run in "
        "<output-dir>/<study>/trial-NNNN. Run the same command again to continue a sweep.",
        epilog="Flags after -- go to every trial's train command, e.g. -- --epochs 5.",
        formatter_class=DefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--space", type=Path, default=Path("configs/sweep.yaml"), help="search space YAML file")
    add(
        "--trials",
        type=positive_int,
        required=True,
        help="finished (complete or pruned) trials the study should have, counted across restarts",
    )
    add(
        "--parallel",
        type=positive_int,
        default=1,
        help="trials that train at once, each in its own process (OMP_NUM_THREADS, unless set, "
        "splits the cores among them)",
    )
    add("--output-dir", type=Path, default=Path("runs"), help="parent of the study folder")
    add(
        "--study",
        type=run_name,
        default="sweep",
        help="study name; <output-dir>/<study>/ holds study.db (and its lock), best.yaml, logs/ "
        "and the trials",
    )
    add(
        "--pruner",
        choices=("median", "none"),
        default="median",
        help="median: stop a trial whose metric is worse than the median of the complete "
        "trials at the same epoch",
    )
    add(
        "--pruner-startup-trials",
        type=non_negative_int,
        default=3,
        help="trials that must complete before any is pruned",
    )
    add(
        "--pruner-warmup-epochs",
        type=non_negative_int,
        default=1,
        help="epochs every trial trains before it can be pruned",
    )
    add("--seed", type=non_negative_int, default=0, help="seed of the sampler (TPE)")
    return parser


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser()
    args = parser.parse_args(argv[:split])
    args.train_flags = argv[split + 1 :]
    args.space = load_space(args.space, parser)
    args.folder = args.output_dir / args.study
    config = parse_config(trial_argv(args, {}, "trial-0000"))  # train's own one-line errors
    args.monitor, args.mode = config.run.monitor, resolve_mode(config.run.monitor, config.run.mode)
    args.fixed_flags = fixed_flags(config, args.space)
    for name in flags_given(args.train_flags):
        flag = name.replace("_", "-")
        if name in SET_BY_SWEEP:
            parser.error(f"--{flag} after -- is set for each trial by the sweep: drop it")
        if flag in args.space.distributions:
            parser.error(f"--{flag} is both in the search space and after --: keep one")
    return args


def flags_given(train_flags: list[str]) -> set[str]:
    """The train flags (by attribute name) that a command line sets explicitly."""
    parser = build_train_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_known_args(train_flags)[0]))


def fixed_flags(config: Config, space: SearchSpace) -> dict:
    """What every trial trains with (the flags after --, resolved, and the defaults): the study
    records it, since trials trained otherwise would not compare."""
    searched = {name.replace("-", "_") for name in space.distributions}
    left_out = {*SET_BY_SWEEP, *HOW_IT_RUNS, *searched}
    values = {key: value for key, value in config.to_dict().items() if key not in left_out}
    return json.loads(json.dumps(values))  # as the study stores it: tuples become lists


def trial_argv(args: argparse.Namespace, params: dict, name: str) -> list[str]:
    placement = ["--output-dir", str(args.folder), "--name", name]
    return ["--no-progress", *args.train_flags, *args.space.train_flags(params), *placement]


@contextmanager
def stop_signals(stopping: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM stop the sweep; its running trials get SIGTERM and save."""
    previous = {
        signum: signal.signal(signum, lambda signum, frame: stopping.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_trials(study: optuna.Study, args: argparse.Namespace, stopping: threading.Event) -> None:
    # Threads suffice: each one only waits for its training process.
    failed_in_a_row: list[str] = []
    with ThreadPoolExecutor(args.parallel) as pool:
        running = set()
        while True:
            while (
                not stopping.is_set()
                and len(failed_in_a_row) < MAX_FAILURES_IN_A_ROW
                and len(running) < args.parallel
                and finished_count(study) + len(running) < args.trials
            ):
                trial = study.ask(args.space.distributions)
                trial.set_user_attr("sweep", process_identity(os.getpid()))
                running.add(pool.submit(run_trial, study, trial, args, stopping))
            if not running:
                break
            done, running = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                failure = future.result()
                failed_in_a_row = failed_in_a_row + [failure] if failure else []
    if len(failed_in_a_row) >= MAX_FAILURES_IN_A_ROW and not stopping.is_set():
        raise UserError(
            f"{len(failed_in_a_row)} trials failed in a row; {failed_in_a_row[-1]} (its output "
            f"is in {args.folder / 'logs'}): fix that and run the same command again"
        )


def run_trial(
    study: optuna.Study, trial: Trial, args: argparse.Namespace, stopping: threading.Event
) -> str | None:
    """Train one trial and tell the study how it ended; a failure's description, or None."""
    name = f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(args.folder / name))
    print(f"trial {trial.number} started: {describe(trial.params)}", flush=True)
    log = args.folder / "logs" / f"{name}.txt"
    with open(log, "w") as output:
        process = start_training(trial_argv(args, trial.params, name), output, args.parallel)
    metrics = args.folder / name / "metrics.jsonl"
    values, pruned = watch(process, trial, metrics, args.monitor, stopping)
    if pruned:
        study.tell(trial, state=TrialState.PRUNED)
        print(f"trial {trial.number} pruned after epoch {len(values)}", flush=True)
        return None
    if process.returncode == 0 and values:
        value = max(values) if args.mode == "max" else min(values)
        study.tell(trial, value)
        print(f"trial {trial.number} complete: {args.monitor} {value:.4f}", flush=True)
        return None
    study.tell(trial, state=TrialState.FAIL)
    if stopping.is_set() and process.returncode == STOPPED:
        print(f"trial {trial.number} stopped with the sweep and saved last.pt", flush=True)
        return None
    failure = f"trial {trial.number} exited with code {process.returncode}: {last_line(log)}"
    print(f"{failure} (its output: {log})", flush=True)
    return None if stopping.is_set() else failure


def describe(params: dict) -> str:
    return " ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def summarise(study: optuna.Study, args: argparse.Namespace) -> None:
    """A table of the trials; the best one's flags as a train --config file."""
    print(f"{'trial':>5}  {'state':<8}  {args.monitor:>8}  params")
    for trial in study.get_trials(deepcopy=False):
        value = "" if trial.value is None else f"{trial.value:.4f}"
        print(f"{trial.number:>5}  {trial.state.name:<8}  {value:>8}  {describe(trial.params)}")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    best = study.best_trial
    config = parse_config(trial_argv(args, best.params, "best")).to_dict()
    dropped = (*SET_BY_SWEEP, "no_progress")
    values = {key: value for key, value in config.items() if value is not None}
    values = {key: value for key, value in values.items() if key not in dropped}
    path = args.folder / "best.yaml"
    path.write_text(
        f"# trial {best.number} of study {args.study}, {args.monitor} {best.value:.4f}\n"
        + yaml.safe_dump(values, sort_keys=False)
    )
    print(f"best: trial {best.number}, run folder {best.user_attrs['run_dir']}, flags in {path}")
    print(f"  python -m {__package__}.train --config {path} --name NAME")


def sweep(args: argparse.Namespace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(args)
    fail_abandoned_trials(study)
    print(f"study {args.folder}: {finished_count(study)} of {args.trials} trials finished")
    stopping = threading.Event()
    with stop_signals(stopping):
        run_trials(study, args, stopping)
    summarise(study, args)
    if stopping.is_set():
        print(
            f"sweep stopped with {finished_count(study)} of {args.trials} trials finished; "
            "stopped trials saved last.pt: run the same command again to continue",
            file=sys.stderr,
        )
        raise StoppedEarly("stop signal")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
    except SystemExit as exit_request:  # --help, or a mistake reported in one line
        return exit_request.code
    return run_reporting_user_errors(lambda: sweep(args))


if __name__ == "__main__":
    raise SystemExit(main())
