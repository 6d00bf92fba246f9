"""`python -m {{ cookiecutter.project_slug }}.train`: train a classifier (see --help)."""

from .config import parse_config
from .errors import run_reporting_user_errors


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    # Imported only now: torch takes seconds to load, --help and flag errors should not wait.
    from .trainer import train

    return run_reporting_user_errors(lambda: train(config))


if __name__ == "__main__":
    raise SystemExit(main())
