"""`python -m {{ cookiecutter.project_slug }}.train`: train a classifier (see --help)."""

from .config.parser import parse_config
from .errors import run_reporting_user_errors
from .runs.preemption import stop_requests


def main(argv: list[str] | None = None) -> int:
    # Listening from the start: a stop signal while the flags are checked (the dataset and model
    # files may import torch), torch loads and the data is read is kept, and the run stops after
    # its first step, saved, instead of dying unsaved.
    with stop_requests() as stop:
        config = parse_config(argv)
        stop.start_budget(config.run.max_minutes)
        # Imported only now: torch takes seconds to load, --help and flag errors should not wait.
        from .training.fit import train

        return run_reporting_user_errors(lambda: train(config, stop))


if __name__ == "__main__":
    raise SystemExit(main())
