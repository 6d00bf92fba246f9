"""A sweep's search space: a YAML file mapping train flags to the values a trial may take.

    lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    batch-size: {type: int, low: 16, high: 128, step: 16}
    optimizer: {type: categorical, choices: [adamw, sgd]}

The whole file is checked before anything runs, each value against the train flag's own rules;
a mistake is one line naming the file, the key and the fix.
"""

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ..config.flags import ConfigParser
from ..config.parser import UniqueKeyLoader, build_parser, checked_value

# The sweep sets these for every trial (or optimises them): a space cannot vary them.
RESERVED = ("config", "help", "output_dir", "name", "resume", "monitor", "mode")
FIELDS = {
    "float": ("low", "high", "log", "step"),
    "int": ("low", "high", "log", "step"),
    "categorical": ("choices",),
}
EXAMPLE = "lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}"


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # by train flag name without "--", e.g. "lr"
    switches: frozenset[str]  # on/off flags: given when a trial samples true

    def train_flags(self, params: dict) -> list[str]:
        """A trial's sampled values as train flags."""
        flags = []
        for name, value in params.items():
            if name in self.switches:
                flags += [f"--{name}"] if value else []
            else:
                flags.append(f"--{name}={value}")
        return flags


def train_flag_actions() -> dict[str, argparse.Action]:
    """The train command's flags by name without "--" and by attribute name."""
    actions = {}
    for action in build_parser()._actions:
        if action.option_strings and action.dest not in RESERVED:
            actions[action.option_strings[0].removeprefix("--")] = action
            actions[action.dest] = action
    return actions


def load_space(path: Path, parser: ConfigParser) -> SearchSpace:
    entries = read_entries(path, parser)
    actions = train_flag_actions()
    distributions, switches = {}, set()
    for key, entry in entries.items():
        where = f"--space {path}: {key}"
        action = actions.get(key) if isinstance(key, str) else None
        if action is None:
            parser.error(
                f"{where} is not a train flag a sweep can vary: use a name from train --help"
            )
        name = action.option_strings[0].removeprefix("--")
        if name in distributions:
            parser.error(f"{where} names --{name} a second time: keep one entry")
        is_switch = isinstance(action, argparse._StoreTrueAction)
        distributions[name] = distribution(entry, action, is_switch, where, parser)
        if is_switch:
            switches.add(name)
    return SearchSpace(distributions, frozenset(switches))


def read_entries(path: Path, parser: ConfigParser) -> dict:
    try:
        entries = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except OSError as error:
        parser.error(
            f"cannot read --space {path} ({error.strerror}): pass a search space YAML file"
        )
    except UnicodeDecodeError:
        parser.error(f"--space {path} is not a text file: pass a search space YAML file")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        parser.error(f"--space {path} is not valid YAML: {problem}{where}")
    if not isinstance(entries, dict) or not entries:
        parser.error(f"--space {path} must map train flags to ranges, e.g. {EXAMPLE}")
    return entries


def distribution(
    entry, action: argparse.Action, is_switch: bool, where: str, parser: ConfigParser
) -> BaseDistribution:
    kind = entry.get("type") if isinstance(entry, dict) else entry
    if not isinstance(entry, dict) or not isinstance(kind, str) or kind not in FIELDS:
        parser.error(
            f"{where} needs type: float, int or categorical (got {kind!r}), e.g. "
            "{type: float, low: 0.1, high: 1.0}"
        )
    unknown = sorted(str(field) for field in entry if field not in ("type", *FIELDS[kind]))
    if unknown:
        parser.error(f"{where}: {kind} takes {', '.join(FIELDS[kind])}, not {unknown[0]!r}")
    if kind == "categorical":
        return choices(entry, action, where, parser)
    if is_switch:
        parser.error(f"{where} is on or off: use " + "{type: categorical, choices: [true, false]}")
    return number_range(entry, action, where, parser)


def choices(entry: dict, action: argparse.Action, where: str, parser: ConfigParser):
    values = entry.get("choices")
    if not isinstance(values, list) or not values:
        parser.error(f"{where}: categorical needs a list of choices, e.g. choices: [adamw, sgd]")
    for value in values:
        checked_value(parser, action, value, f"{where}: choice")
    return CategoricalDistribution(values)


def number_range(entry: dict, action: argparse.Action, where: str, parser: ConfigParser):
    kind = entry["type"]
    number = float if kind == "float" else int
    low, high = (bound(entry, field, number, action, where, parser) for field in ("low", "high"))
    if low >= high:
        parser.error(f"{where}: low {low} must be below high {high}: swap or widen them")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        parser.error(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        parser.error(f"{where}: a log range needs low above 0, got {low}")
    step = entry.get("step")
    if step is not None:
        step = as_number(step, number, f"{where}: step", parser)
        if step <= 0:
            parser.error(f"{where}: step must be above 0, got {step}")
        if log:
            parser.error(f"{where}: step and log: true cannot be combined: drop one")
    if kind == "float":
        return FloatDistribution(low, high, log=log, step=step)
    return IntDistribution(low, high, log=log, step=step or 1)


def bound(entry: dict, field: str, number: type, action, where: str, parser: ConfigParser):
    if field not in entry:
        parser.error(f"{where}: {entry['type']} needs low and high, e.g. {EXAMPLE}")
    value = as_number(entry[field], number, f"{where}: {field}", parser)
    checked_value(parser, action, value, f"{where}: {field}")  # a value train accepts
    return value


def as_number(value, number: type, where: str, parser: ConfigParser):
    """int or float from YAML; text too, since YAML reads 1e-4 (no dot) as text."""
    try:
        result = number(str(value))
    except ValueError:
        result = math.nan
    if not math.isfinite(result):
        kind = "a whole number" if number is int else "a number"
        parser.error(f"{where} must be {kind}, got {value!r}")
    return result
