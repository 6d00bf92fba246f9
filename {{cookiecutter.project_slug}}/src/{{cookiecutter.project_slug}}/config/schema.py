"""A training run's configuration: one frozen group per concern (data, model, optimisation,
run) plus the optional parts' flags (extras.py), and the run folder's config.yaml.
Each field is declared once, with the train flag that sets it (its default, type and help);
parser.py builds the flags from these fields. Each module receives the group it needs."""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from ..datasets import dataset_names
from ..models import model_names
{%- if cookiecutter.task == "image_classification" %}
from .flags import (
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
{%- else %}
from .flags import (
    ema_decay,
    fraction,
    max_length,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_name,
    smoothing,
    vocab_size,
)
{%- endif %}
{%- if cookiecutter.task == "text_classification" %}

DEFAULT_DATASET, DEFAULT_MODEL, DEFAULT_LR = "languages", "bag_of_embeddings", 1e-2
{%- else %}

DEFAULT_DATASET, DEFAULT_MODEL, DEFAULT_LR = "digits", "simple_cnn", 3e-3
{%- endif %}

INIT_SCHEMES = (
    "default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "orthogonal",
    "normal",
)


def flag(default=None, help: str = "", **options):
    """A Config field and the train flag that sets it (`options` go to argparse's add_argument;
    `aliases`: more names for the flag; a callable `choices` is called when the parser is built)."""
    return field(default=default, metadata={"help": help, **options})


def switch(help: str):
    """A Config field set by a flag without a value."""
    return flag(False, help, action="store_true")


@dataclass(frozen=True)
class DataConfig:
{%- if cookiecutter.task == "image_classification" %}
    """What to train on, and how images become batches."""

    dataset: str = flag(DEFAULT_DATASET, "dataset (datasets/<name>.py)", choices=dataset_names)
    data_dir: Path | None = flag(
        None,
        "image_folder: root/train/<class>/* with val/ (or valid/, validation/) and/or test/, or "
        "root/<class>/*; cifar10: download root",
        type=Path,
    )
    download: bool = switch("cifar10: download when missing")
    image_size: int | None = flag(
        None,
        "side of the square input (default: the dataset's own; 64 for image_folder, which suits "
        "training from scratch on a CPU; --pretrained wants 224)",
        type=image_size,
    )
    crop_ratio: float = flag(
        0.875,
        "image_folder: evaluation resizes the shorter side to image-size / crop-ratio, then "
        "centre-crops image-size",
        type=crop_ratio,
    )
    val_fraction: float = flag(
        0.2,
        "share of each class held out for validation when there is no val folder",
        type=fraction,
    )
    fake_samples: int = flag(512, "fake: dataset size", type=positive_int)
    fake_classes: int = flag(10, "fake: class count", type=class_count)
    skip_bad_images: bool = switch("image_folder: skip unreadable images instead of stopping")
    num_workers: int | None = flag(
        None,
        "DataLoader worker processes (default: 0 for the in-memory datasets; for image_folder, "
        "this machine's cores shared among its processes, at most 8)",
        type=non_negative_int,
    )
    mixup_alpha: float = flag(0.0, "MixUp alpha (0 disables)", type=non_negative_float)
    cutmix_alpha: float = flag(0.0, "CutMix alpha (0 disables)", type=non_negative_float)
{%- else %}
    """What to train on, and how texts become batches."""

    dataset: str = flag(DEFAULT_DATASET, "dataset (datasets/<name>.py)", choices=dataset_names)
    data_dir: Path | None = flag(
        None,
        "text_files: a folder of train.csv/.tsv/.jsonl with val. (or valid., validation.) and/or "
        "test., one such file, or class folders of .txt files (root/train/<class>/*.txt ...)",
        type=Path,
    )
    val_fraction: float = flag(
        0.2,
        "share of each class held out for validation when there is no val file or folder",
        type=fraction,
    )
    num_workers: int | None = flag(
        None,
        "DataLoader worker processes (default: 0: the texts are encoded once, in memory)",
        type=non_negative_int,
    )
{%- endif %}
    balanced_sampling: bool = switch(
        "draw each epoch's training samples with equal probability per class (with "
        "replacement); under DDP every rank draws a disjoint share"
    )
{%- if cookiecutter.task == "text_classification" %}
    text_column: str = flag(
        "text", "text_files: the column (CSV/TSV header) or key (JSONL) that holds the text"
    )
    label_column: str = flag("label", "text_files: the column or key that holds the label")
    tokenizer: Path | None = flag(
        None,
        "an existing tokenizer.json (Hugging Face tokenizers) instead of one trained on the "
        "training split",
        type=Path,
    )
    tokenizer_model: str = flag(
        "bpe", "subword model trained on the training split", choices=("bpe", "wordpiece")
    )
    vocab_size: int = flag(2000, "vocabulary of the trained tokenizer", type=vocab_size)
    max_length: int = flag(
        256, "longest token sequence: longer texts are cut (train.log counts them)", type=max_length
    )
    no_bucketing: bool = switch(
        "shuffle texts freely instead of batching texts of similar lengths (less padding)"
    )
{%- endif %}
    batch_size: int = flag(64, "batch size per process", type=positive_int)
    seed: int = flag(0, "random seed", type=non_negative_int)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture, its initial weights, and how it runs (compiled, memory layout)."""

    model: str = flag(DEFAULT_MODEL, "model (models/<name>.py)", choices=model_names)
    init: str = flag("default", "weight init scheme", choices=INIT_SCHEMES)
    pretrained: bool = switch(
        "start from the model's pretrained weights, where it has them (needs network)"
    )
    compile: bool = switch(
        "torch.compile the model (pays off on GPUs; compiling takes a minute on a CPU); "
        "checkpoints load with or without it"
    )
{%- if cookiecutter.task == "image_classification" %}
    channels_last: bool = switch(
        "channels-last memory format for model and inputs (faster convolutions on tensor-core GPUs)"
    )
{%- endif %}


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer, its schedule over the run, and the training loss."""

    optimizer: str = flag("adamw", "optimizer", choices=("adamw", "sgd"))
    lr: float = flag(DEFAULT_LR, "peak learning rate", type=positive_float)
    momentum: float = flag(0.9, "SGD momentum", type=non_negative_float)
    nesterov: bool = switch("SGD: Nesterov momentum")
    weight_decay: float = flag(
        1e-4, "weight decay (never applied to biases and norm layers)", type=non_negative_float
    )
    scheduler: str = flag("cosine", "LR schedule", choices=("cosine", "step", "constant"))
    step_size: int = flag(10, "step scheduler: epochs between decays", type=positive_int)
    gamma: float = flag(0.1, "step scheduler: decay", type=positive_float)
    min_lr: float = flag(0.0, "cosine: final LR", type=non_negative_float)
    warmup_epochs: int | None = flag(
        None,
        "linear LR warmup, in epochs (default: 1; 0 for a one-epoch run)",
        type=non_negative_int,
    )
    warmup_steps: int | None = flag(
        None, "linear LR warmup, in optimizer updates", type=non_negative_int
    )
    accum_steps: int = flag(1, "micro-batches per optimizer update", type=positive_int)
    clip_grad_norm: float | None = flag(
        None, "clip the gradient norm to this value", type=positive_float
    )
    label_smoothing: float = flag(0.0, "cross-entropy smoothing", type=smoothing)
    class_weights: str = flag(
        "none",
        "auto: weigh the training loss by inverse class frequency (for imbalanced data)",
        choices=("none", "auto"),
    )
    ema: float = flag(
        0.0,
        "keep an exponential moving average of the weights with this decay (e.g. 0.999; 0: "
        "off), warmed up as min(DECAY, (1 + step) / (10 + step)); it is evaluated each epoch, "
        "selects best.pt and is what evaluate and export use",
        type=ema_decay,
        metavar="DECAY",
    )


@dataclass(frozen=True)
class RunConfig:
    """How long a run lasts, where it writes, and what it watches."""

    epochs: int = flag(15, "training epochs", type=positive_int)
    stop_after_epochs: int | None = flag(
        None,
        "end this invocation after N epochs (the schedule still spans --epochs); continue "
        "later with --resume auto, e.g. in time-limited cluster jobs",
        type=positive_int,
    )
    max_minutes: float | None = flag(
        None,
        "stop after this many minutes as on SIGTERM: save mid-epoch and exit with code 75 (set "
        "it below a job's time limit); continue later with --resume auto",
        type=positive_float,
    )
    deterministic: bool = switch("deterministic algorithms (bit-exact reruns)")
    device: str = flag("auto", "auto, cpu, cuda or cuda:N")
    output_dir: Path = flag(Path("runs"), "parent of run folders", type=Path)
    name: str | None = flag(
        None, "run folder name under --output-dir (default: <dataset>-<model>)", type=run_name
    )
    resume: str | None = flag(
        None, "checkpoint to continue from, or 'auto' for the run folder's last.pt"
    )
    log_every: int = flag(20, "optimizer updates between log lines", type=positive_int)
    no_progress: bool = switch("hide progress bars")
    patience: int = flag(
        0, "early stopping: epochs without improvement (0: off)", type=non_negative_int
    )
    min_delta: float = flag(
        0.0, "early stopping: smallest change that counts", type=non_negative_float
    )
    monitor: str = flag(
        None,
        "validation metric to watch: val_loss or one of the task's (default: the task's "
        "headline metric; spell it --monitor-metric after torchrun, whose own parser takes "
        "--monitor for its --monitor-interval)",
        aliases=("--monitor-metric",),
    )
    mode: str = flag(
        "auto",
        "min or max is better; auto: min for losses, max for other metrics",
        choices=("auto", "min", "max"),
    )


GROUPS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class Config:
    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    run: RunConfig
    extras: Mapping[str, object]  # the chosen optional parts' flags (extras.py), by name

    @classmethod
    def from_flags(cls, values: Mapping[str, object]) -> "Config":
        """From flag values by name (argparse's, or a checkpoint's to_dict())."""
        groups = {
            name: group(**{field.name: values[field.name] for field in dataclasses.fields(group)})
            for name, group in GROUPS.items()
        }
        grouped = {field.name for group in GROUPS.values() for field in dataclasses.fields(group)}
        extras = {key: value for key, value in values.items() if key not in grouped}
        return cls(**groups, extras=MappingProxyType(extras))

    def to_dict(self) -> dict:
        """Every flag's value by name, as plain data (config.yaml, weights_only checkpoints)."""
        values = {}
        for name in GROUPS:
            values.update(dataclasses.asdict(getattr(self, name)))
        values.update(self.extras)
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in values.items()
        }


def config_yaml(config: Config) -> str:
    """A run's config.yaml: every flag that has a value, readable back with --config."""
    return flag_values_yaml(config.to_dict())


def flag_values_yaml(values: Mapping[str, object]) -> str:
    return yaml.safe_dump(
        {key: value for key, value in values.items() if value is not None}, sort_keys=False
    )


def update_config_yaml(path: Path, config: Config) -> list[str]:
    """Rewrite a resumed run's config.yaml (atomically) with the flags it continues under, so
    that it repeats what the run became; `resume` stays as the run began. The changes, as
    "key old -> new" (none: the file is left as it was)."""
    recorded = recorded_config(path)
    text = flag_values_yaml({**config.to_dict(), "resume": recorded.get("resume")})
    values = yaml.safe_load(text)
    changes = [
        f"{key} {recorded.get(key, '(unset)')} -> {values.get(key, '(unset)')}"
        for key in [*values, *(key for key in recorded if key not in values)]
        if recorded.get(key) != values.get(key)
    ]
    if changes:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
    return changes


def recorded_config(path: Path) -> dict:
    """A run folder's config.yaml as it stands ({} when missing or unreadable)."""
    try:
        recorded = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return recorded if isinstance(recorded, dict) else {}
