"""User-facing failures: one clear line, a non-zero exit, no traceback."""

import os
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix (bad flag, bad data, bad checkpoint)."""


class StoppedEarly(Exception):
    """The run saved where it stopped (preemption, time budget) and should be resumed."""

    # EX_TEMPFAIL from sysexits.h: "try again later", which is what a preempted run asks for.
    exit_code = 75


def reports_mistakes() -> bool:
    """Under torchrun every rank finds the same mistake: rank 0 says it, once."""
    return os.environ.get("RANK", "0") == "0"


def first_line(error: BaseException) -> str:
    """What went wrong, in one line: the error's first line, or its type when it says nothing."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def user_message(error: UserError) -> str:
    """The error's one line; one raised in a DataLoader worker arrives wrapped in its traceback,
    whose last line reads "<module>.UserError: <message>"."""
    text = str(error).strip()
    if "Original Traceback" in text:
        return text.splitlines()[-1].split(": ", 1)[-1]
    return text


def prepare_output_file(path: Path, example_name: str, checkpoint: Path) -> None:
    """Create the folder an --output file goes into; refuse a folder, a path inside a file and
    the checkpoint being read."""
    if path.exists() and path.resolve() == checkpoint.resolve():
        raise UserError(f"--output {path} is the checkpoint itself: give another file path")
    if path.is_dir():
        raise UserError(
            f"--output {path} is a folder: give a file path, e.g. {path / example_name}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the folder of --output {path} ({error.strerror}): pick another path"
        ) from None


def run_reporting_user_errors(entry_point: Callable[[], None]) -> int:
    """Run a command, turning a UserError into a one-line message and exit code 2."""
    try:
        entry_point()
    except UserError as error:
        if reports_mistakes():
            print(f"error: {user_message(error)}", file=sys.stderr)
        return 2
    except StoppedEarly as stopped:  # the run logged where it stopped
        return stopped.exit_code
    except KeyboardInterrupt:  # train saves on Ctrl-C instead (see preemption.py)
        print("interrupted", file=sys.stderr)
        return 130
    return 0
