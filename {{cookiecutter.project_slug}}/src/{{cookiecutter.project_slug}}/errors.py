"""User-facing failures: one clear line, a non-zero exit, no traceback."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix (bad flag, bad data, bad checkpoint)."""


def run_reporting_user_errors(entry_point: Callable[[], None]) -> int:
    """Run a command, turning a UserError into a one-line message and exit code 2."""
    try:
        entry_point()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last saved checkpoint is intact", file=sys.stderr)
        return 130
    return 0
