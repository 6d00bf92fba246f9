"""The train command's flags: parsed over --config YAML defaults, checked, made a Config.

This module imports no torch, so --help and mistakes argparse catches are answered instantly;
checks that need a dataset's, model's or task's facts import their module (after --help).
"""

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..datasets import dataset_info
from ..models import model_info
from ..tasks import OPTIONAL_PARTS, declaration
from .extras import EXTRAS
from .flags import ConfigParser, DefaultsHelpFormatter, run_name
from .schema import GROUPS, Config


def build_parser() -> ConfigParser:
    """The train flags: one per Config field (schema.py), then the optional parts' (extras.py)."""
    parser = ConfigParser(
        prog="train",
        description="Train a model. Flags override values from --config.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file of flag defaults (keys are flag names)"
    )
    for title, group in GROUPS.items():
        arguments = parser.add_argument_group(title)
        for field in dataclasses.fields(group):
            arguments.add_argument(*flag_names(field), default=field.default, **flag_options(field))
    for extra in EXTRAS:
        extra.add_flags(parser)
    return parser


def flag_names(field: dataclasses.Field) -> list[str]:
    return ["--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ())]


def flag_options(field: dataclasses.Field) -> dict:
    options = {key: value for key, value in field.metadata.items() if key != "aliases"}
    if callable(options.get("choices")):
        options["choices"] = options["choices"]()
    return options


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse flags over the YAML defaults and check the combinations argparse cannot."""
    parser = build_parser()
    pre_args, _ = parser.parse_known_args(argv)
    if pre_args.config is not None:
        parser.set_defaults(**load_yaml_defaults(parser, pre_args.config))
    flags = parser.parse_args(argv)
    check_combinations(parser, flags)
    if flags.name is None:
        flags.name = default_run_name(flags)
    del flags.config  # read already; a run's config.yaml holds the values themselves
    return Config.from_flags(vars(flags))


def saved_config(values: Mapping[str, object]) -> Config:
    """The Config a checkpoint saved; flags added since then take their defaults."""
    defaults = vars(build_parser().parse_args([]))
    del defaults["config"]
    restored = {**defaults, **values}
    for key in ("data_dir", "output_dir"):
        if restored[key] is not None:
            restored[key] = Path(restored[key])
    return Config.from_flags({key: restored[key] for key in defaults})


def default_run_name(config: argparse.Namespace) -> str:
    """The folder of the checkpoint being resumed, when it lies in --output-dir; else
    <dataset>-<model>."""
    if config.resume not in (None, "auto"):
        source = Path(config.resume).absolute()
        if source.parent.parent == config.output_dir.absolute():
            return source.parent.name
    return f"{config.dataset}-{config.model}"


def load_yaml_defaults(parser: ConfigParser, path: Path) -> dict:
    try:
        values = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except OSError as error:
        parser.error(f"cannot read --config {path}: {error.strerror}")
    except UnicodeDecodeError:
        parser.error(f"--config {path} is not a text file: pass a YAML file of flag values")
    except yaml.YAMLError as error:
        parser.error(f"--config {path} is not valid YAML: {str(error).splitlines()[0]}")
    if values is None:
        return {}
    if not isinstance(values, dict):
        parser.error(f"--config {path} must hold a mapping of flag names to values")
    actions = {action.dest: action for action in parser._actions}
    defaults = {}
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in ("config", "help"):
            parser.error(f"--config {path}: unknown key {key!r}")
        defaults[dest] = checked_value(parser, actions[dest], value, f"--config {path}: {key}")
    return defaults


class UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def checked_value(parser: ConfigParser, action: argparse.Action, value, where: str):
    """Apply the flag's own type and choices to a YAML value."""
    if value is None:
        parser.error(f"{where} has no value: give one or delete the line")
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            parser.error(f"{where} must be true or false, got {value!r}")
        return value
    if action.type in (None, str, run_name) and not isinstance(value, str):
        parser.error(f"{where} must be text, got {value!r}")
    if action.type is not None:
        try:
            value = action.type(str(value))
        except argparse.ArgumentTypeError as error:
            parser.error(f"{where} {error}")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{where} must be one of {', '.join(action.choices)}, got {value!r}")
    return value


def check_combinations(parser: ConfigParser, config: argparse.Namespace) -> None:
    if config.warmup_epochs is not None and config.warmup_steps is not None:
        parser.error("give --warmup-epochs or --warmup-steps, not both")
    if config.warmup_epochs is not None and config.warmup_epochs >= config.epochs > 1:
        parser.error(
            f"--warmup-epochs {config.warmup_epochs} leaves no epoch of the {config.epochs} to "
            "decay the learning rate in: lower --warmup-epochs or raise --epochs"
        )
    if config.warmup_epochs is None and config.warmup_steps is None:
        config.warmup_epochs = 1 if config.epochs > 1 else 0
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        parser.error(f"--device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    if config.min_lr > config.lr:
        parser.error(f"--min-lr {config.min_lr:g} is above --lr {config.lr:g}: lower --min-lr")
    if config.balanced_sampling and config.class_weights == "auto":
        parser.error(
            "--balanced-sampling already gives every class the same weight; --class-weights "
            "auto on top would favour rare classes in proportion to their rarity: pick one"
        )
    for extra in EXTRAS:
        extra.check(config, parser)
    check_dataset_and_model(parser, config)


def check_dataset_and_model(parser: ConfigParser, config: argparse.Namespace) -> None:
    """What the dataset, the model and their task say of the other flags."""
    dataset, model = dataset_info(config.dataset), model_info(config.model)
    if model.task != dataset.task:
        parser.error(
            f"--model {config.model} takes {model.task} batches, but --dataset {config.dataset} "
            f"is {dataset.task} data: pick a model of the dataset's task"
        )
    if dataset.needs_data_dir and config.data_dir is None:
        parser.error(f"--dataset {config.dataset} needs --data-dir pointing at the data")
    if config.pretrained and not model.has_pretrained_weights:
        parser.error(f"--pretrained: {config.model} has no pretrained weights; drop --pretrained")
    task = declaration(dataset.task)
    if config.monitor is None:
        config.monitor = task.headline
    if config.monitor not in task.metrics:
        parser.error(
            f"--monitor {config.monitor} is not a metric of {task.name}: pick one of "
            f"{', '.join(task.metrics)}"
        )
    check_supported_parts(parser, config, task)


def check_supported_parts(parser: ConfigParser, config: argparse.Namespace, task) -> None:
    """A flag for a part of the run the task lacks is refused when given, and switched off
    when it is on by default."""
    for part, names in OPTIONAL_PARTS.items():
        if part in task.supports:
            continue
        for name in names:
            if not hasattr(config, name):
                continue  # the project was rendered without that option
            default = parser.get_default(name)
            if getattr(config, name) != default:
                flag = "--" + name.replace("_", "-")
                parser.error(f"{flag}: {task.name} does not support {part}; drop {flag}")
            if default:
                setattr(config, name, type(default)())
