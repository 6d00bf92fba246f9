"""The train command's flags: parsed over --config YAML defaults, checked, made a Config.

This module imports no torch, so --help and mistakes argparse catches are answered instantly;
checks that need a dataset's, model's or task's facts import their module (after --help).
"""

import argparse
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..datasets import dataset_info, dataset_names
from ..models import model_info, model_names
from ..tasks import OPTIONAL_PARTS, declaration
from .extras import FEATURES
from .flags import (
    ConfigParser,
    DefaultsHelpFormatter,
    class_count,
    crop_ratio,
    ema_decay,
    fraction,
    image_size,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_name,
    smoothing,
)
from .schema import Config

INIT_SCHEMES = (
    "default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "orthogonal",
    "normal",
)


def build_parser() -> ConfigParser:
    parser = ConfigParser(
        prog="train",
        description="Train an image classifier. Flags override values from --config.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file of flag defaults (keys are flag names)"
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", choices=dataset_names(), default="digits", help="dataset (datasets/<name>.py)"
    )
    data.add_argument(
        "--data-dir",
        type=Path,
        help="image_folder: root/train/<class>/* with val/ (or valid/, validation/) and/or "
        "test/, or root/<class>/*; cifar10: download root",
    )
    data.add_argument("--download", action="store_true", help="cifar10: download when missing")
    data.add_argument(
        "--image-size",
        type=image_size,
        help="side of the square input (default: 8 for digits, 32 for cifar10 and fake, 64 for "
        "image_folder, which suits training from scratch on a CPU; --pretrained wants 224)",
    )
    data.add_argument(
        "--crop-ratio",
        type=crop_ratio,
        default=0.875,
        help="image_folder: evaluation resizes the shorter side to image-size / crop-ratio, "
        "then centre-crops image-size",
    )
    data.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        help="share of each class held out for validation when there is no val folder",
    )
    data.add_argument("--fake-samples", type=positive_int, default=512, help="fake: dataset size")
    data.add_argument("--fake-classes", type=class_count, default=10, help="fake: class count")
    data.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="image_folder: skip unreadable images instead of stopping",
    )
    data.add_argument(
        "--num-workers",
        type=non_negative_int,
        help="DataLoader worker processes (default: 0 for the in-memory datasets; for "
        "image_folder, this machine's cores shared among its processes, at most 8)",
    )
    data.add_argument(
        "--mixup-alpha", type=non_negative_float, default=0.0, help="MixUp alpha (0 disables)"
    )
    data.add_argument(
        "--cutmix-alpha", type=non_negative_float, default=0.0, help="CutMix alpha (0 disables)"
    )
    data.add_argument(
        "--balanced-sampling",
        action="store_true",
        help="draw each epoch's training samples with equal probability per class (with "
        "replacement); under DDP every rank draws a disjoint share",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", choices=model_names(), default="simple_cnn", help="model (models/<name>.py)"
    )
    model.add_argument("--init", choices=INIT_SCHEMES, default="default", help="weight init scheme")
    model.add_argument(
        "--pretrained",
        action="store_true",
        help="start from the model's pretrained weights, where it has them (needs network)",
    )

    speed = parser.add_argument_group("speed")
    speed.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (pays off on GPUs; compiling takes a minute on a CPU); "
        "checkpoints load with or without it",
    )
    speed.add_argument(
        "--channels-last",
        action="store_true",
        help="channels-last memory format for model and inputs (faster convolutions on "
        "tensor-core GPUs)",
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=15, help="training epochs")
    optim.add_argument(
        "--stop-after-epochs",
        type=positive_int,
        help="end this invocation after N epochs (the schedule still spans --epochs); "
        "continue later with --resume auto, e.g. in time-limited cluster jobs",
    )
    optim.add_argument(
        "--max-minutes",
        type=positive_float,
        help="stop after this many minutes as on SIGTERM: save mid-epoch and exit with code 75 "
        "(set it below a job's time limit); continue later with --resume auto",
    )
    optim.add_argument("--batch-size", type=positive_int, default=64, help="batch size per process")
    optim.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate")
    optim.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="optimizer")
    optim.add_argument("--momentum", type=non_negative_float, default=0.9, help="SGD momentum")
    optim.add_argument("--nesterov", action="store_true", help="SGD: Nesterov momentum")
    optim.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=1e-4,
        help="weight decay (never applied to biases and norm layers)",
    )
    optim.add_argument(
        "--scheduler", choices=("cosine", "step", "constant"), default="cosine", help="LR schedule"
    )
    optim.add_argument(
        "--step-size", type=positive_int, default=10, help="step scheduler: epochs between decays"
    )
    optim.add_argument("--gamma", type=positive_float, default=0.1, help="step scheduler: decay")
    optim.add_argument("--min-lr", type=non_negative_float, default=0.0, help="cosine: final LR")
    warmup = optim.add_mutually_exclusive_group()
    warmup.add_argument(
        "--warmup-epochs",
        type=non_negative_int,
        help="linear LR warmup, in epochs (default: 1; 0 for a one-epoch run)",
    )
    warmup.add_argument(
        "--warmup-steps", type=non_negative_int, help="linear LR warmup, in optimizer updates"
    )
    optim.add_argument(
        "--accum-steps", type=positive_int, default=1, help="micro-batches per optimizer update"
    )
    optim.add_argument(
        "--clip-grad-norm", type=positive_float, help="clip the gradient norm to this value"
    )
    optim.add_argument(
        "--label-smoothing", type=smoothing, default=0.0, help="cross-entropy smoothing"
    )
    optim.add_argument(
        "--class-weights",
        choices=("none", "auto"),
        default="none",
        help="auto: weigh the training loss by inverse class frequency (for imbalanced data)",
    )
    optim.add_argument(
        "--ema",
        type=ema_decay,
        default=0.0,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999; "
        "0: off), warmed up as min(DECAY, (1 + step) / (10 + step)); it is evaluated each "
        "epoch, selects best.pt and is what evaluate and export use",
    )

    stopping = parser.add_argument_group("early stopping")
    stopping.add_argument(
        "--patience", type=non_negative_int, default=0, help="epochs without improvement (0: off)"
    )
    stopping.add_argument(
        "--min-delta", type=non_negative_float, default=0.0, help="smallest change that counts"
    )
    stopping.add_argument(
        "--monitor",
        "--monitor-metric",
        default="val_acc",
        help="validation metric to watch: val_loss or one of the task's (spell it "
        "--monitor-metric after torchrun, whose own parser takes --monitor for its "
        "--monitor-interval)",
    )
    stopping.add_argument(
        "--mode",
        choices=("auto", "min", "max"),
        default="auto",
        help="min or max is better; auto: min for losses, max for other metrics",
    )

    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    runtime.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms (bit-exact reruns)"
    )
    runtime.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir", type=Path, default=Path("runs"), help="parent of run folders"
    )
    output.add_argument(
        "--name",
        type=run_name,
        help="run folder name under --output-dir (default: <dataset>-<model>)",
    )
    output.add_argument(
        "--resume", help="checkpoint to continue from, or 'auto' for the run folder's last.pt"
    )
    output.add_argument(
        "--log-every", type=positive_int, default=20, help="optimizer updates between log lines"
    )
    output.add_argument("--no-progress", action="store_true", help="hide progress bars")
    for feature in FEATURES:
        feature.add_flags(parser)
    return parser


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
    for feature in FEATURES:
        feature.check(config, parser)
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
