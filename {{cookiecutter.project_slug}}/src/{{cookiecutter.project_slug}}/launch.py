"""`python -m <package>.launch`: torchrun, with its own arguments, minus the agent's tracebacks.

When a worker fails, torchrun's agent raises ChildFailedError; when the job is signalled, it
raises SignalException; both end in a traceback after the workers have said what happened
(a mistake's one `error:` line, or where a stopped run saved). This launcher reports either in
one line and exits with the worker's code (or 128 + the signal). It also checks the training
flags before any worker starts: workers that start at different moments would race to report
a mistake, and the agent stops the others as soon as the first one exits.
slurm/train.sbatch uses it, and requeues its job when it exits 128 + SIGUSR1 (the workers saved
on Slurm's warning before a time limit).
"""

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from .config.parser import parse_config

USER_ERROR_EXIT_CODE = 2  # errors.run_reporting_user_errors: the worker printed the reason


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.module and args.training_script == f"{__package__}.train":
        parse_config(args.training_script_args)  # a mistake: one line, exit 2, no worker
    try:
        run(args)
    except ChildFailedError as failure:
        rank, first = failure.get_first_failure()
        if first.exitcode != USER_ERROR_EXIT_CODE:
            print(f"launch: rank {rank} failed with exit code {first.exitcode}", file=sys.stderr)
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as stop:
        print(f"launch: stopped by {stop.sigval.name}", file=sys.stderr)
        return 128 + stop.sigval
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
