"""Flag value types and the parser every command uses: a bad value gets one line naming it.

Imports no torch, so `--help` and mistakes in flags are answered instantly.
"""

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn

from ..errors import reports_mistakes
{%- if cookiecutter.task == "image_classification" %}

# Every model's stem and pooling needs at least this many pixels per side.
MIN_IMAGE_SIZE = 8
{%- endif %}


class ConfigParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the problem and the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n" if reports_mistakes() else None)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default is None or action.default is False or "(default:" in help_text:
            return help_text
        return super()._get_help_string(action)


def number(kind: type, accepts: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: `kind(text)` when `accepts` it, else one line stating `rule`."""
    description = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {description}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = number(int, lambda value: value > 0, "a positive whole number")
non_negative_int = number(int, lambda value: value >= 0, "zero or more")
positive_float = number(float, lambda value: 0 < value < math.inf, "a positive finite number")
non_negative_float = number(
    float, lambda value: 0 <= value < math.inf, "zero or a positive finite number"
)
fraction = number(float, lambda value: 0 < value < 1, "between 0 and 1 (exclusive)")
smoothing = number(float, lambda value: 0 <= value < 1, "at least 0 and below 1")
{%- if cookiecutter.task == "image_classification" %}
image_size = number(int, lambda value: value >= MIN_IMAGE_SIZE, f"at least {MIN_IMAGE_SIZE} pixels")
class_count = number(int, lambda value: value >= 2, "at least 2 (a classifier needs two)")
crop_ratio = number(float, lambda value: 0 < value <= 1, "above 0 and at most 1")
{%- else %}
max_length = number(int, lambda value: value >= 2, "at least 2 (the [CLS] token and one more)")
vocab_size = number(
    int, lambda value: value >= 300, "at least 300 (the 256 bytes, special tokens and merges)"
)
{%- endif %}
ema_decay = number(float, lambda value: 0 <= value < 1, "0 (off) or a decay below 1, e.g. 0.999")


def run_name(text: str) -> str:
    """A plain folder name: the run folder always lies directly under --output-dir."""
    if not text.strip() or text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(
            f"must be a plain folder name (no '/', '\\', '.' or '..'), got {text!r}"
        )
    return text


def device_name(text: str) -> str:
    """auto, cpu, cuda or cuda:N (whether that device exists is checked once torch is loaded)."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
