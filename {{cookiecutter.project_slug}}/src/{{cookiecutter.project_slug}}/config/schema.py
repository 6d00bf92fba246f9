"""A training run's configuration: one frozen group per concern (data, model, optimisation,
run) plus the optional parts' flags (extras.py), and the run folder's config.yaml.
Each module receives the group it needs; parser.py turns flags into a Config."""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml


@dataclass(frozen=True)
class DataConfig:
    """What to train on, and how images become batches."""

    dataset: str
    data_dir: Path | None
    download: bool
    image_size: int | None
    crop_ratio: float
    val_fraction: float
    fake_samples: int
    fake_classes: int
    skip_bad_images: bool
    num_workers: int | None
    mixup_alpha: float
    cutmix_alpha: float
    balanced_sampling: bool
    batch_size: int
    seed: int


@dataclass(frozen=True)
class ModelConfig:
    """The architecture, its initial weights, and how it runs (compiled, memory layout)."""

    model: str
    init: str
    pretrained: bool
    compile: bool
    channels_last: bool


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer, its schedule over the run, and the training loss."""

    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    scheduler: str
    step_size: int
    gamma: float
    min_lr: float
    warmup_epochs: int | None
    warmup_steps: int | None
    accum_steps: int
    clip_grad_norm: float | None
    label_smoothing: float
    class_weights: str
    ema: float
    epochs: int


@dataclass(frozen=True)
class RunConfig:
    """How long a run lasts, where it writes, and what it watches."""

    epochs: int
    stop_after_epochs: int | None
    max_minutes: float | None
    seed: int
    deterministic: bool
    device: str
    output_dir: Path
    name: str
    resume: str | None
    log_every: int
    no_progress: bool
    patience: int
    min_delta: float
    monitor: str
    mode: str


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
    features: Mapping[str, object]  # the chosen optional parts' flags (extras.py), by name

    @classmethod
    def from_flags(cls, values: Mapping[str, object]) -> "Config":
        """From flag values by name (argparse's, or a checkpoint's to_dict())."""
        groups = {
            name: group(**{field.name: values[field.name] for field in dataclasses.fields(group)})
            for name, group in GROUPS.items()
        }
        grouped = {field.name for group in GROUPS.values() for field in dataclasses.fields(group)}
        features = {key: value for key, value in values.items() if key not in grouped}
        return cls(**groups, features=MappingProxyType(features))

    def to_dict(self) -> dict:
        """Every flag's value by name, as plain data (config.yaml, weights_only checkpoints)."""
        values = {}
        for name in GROUPS:
            values.update(dataclasses.asdict(getattr(self, name)))
        values.update(self.features)
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
