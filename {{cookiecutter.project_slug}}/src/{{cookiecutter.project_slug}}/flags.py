"""Flag value types and the parser every command uses: a bad value gets one line naming it.

Imports no torch, so `--help` and mistakes in flags are answered instantly.
"""

import argparse
from typing import NoReturn

# Every model's stem and pooling needs at least this many pixels per side.
MIN_IMAGE_SIZE = 8


class ConfigParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the problem and the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default is None or action.default is False or "(default:" in help_text:
            return help_text
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or a positive finite number, got {text}")
    return value


def fraction(text: str) -> float:
    value = _number(text, float, "a number")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def image_size(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < MIN_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_IMAGE_SIZE} pixels, got {text}")
    return value


def class_count(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a classifier needs two), got {text}")
    return value


def smoothing(text: str) -> float:
    value = _number(text, float, "a number")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def run_name(text: str) -> str:
    """A plain folder name: the run folder always lies directly under --output-dir."""
    if not text.strip() or text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(
            f"must be a plain folder name (no '/', '\\', '.' or '..'), got {text!r}"
        )
    return text


def crop_ratio(text: str) -> float:
    value = _number(text, float, "a number")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def _number(text: str, kind: type, description: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {description}, got {text!r}") from None
