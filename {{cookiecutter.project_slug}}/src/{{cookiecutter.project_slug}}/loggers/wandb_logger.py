"""Weights & Biases: config, metrics by step, best values in the summary, best checkpoint."""

import argparse
import netrc
import os
from pathlib import Path

import torch
import wandb
from torch import nn
from torchvision.utils import make_grid

from ..config import config_to_dict
from ..data import DataSpec
from ..errors import UserError
from .base import RunLogger

OFFLINE_MODES = ("offline", "disabled", "dryrun")


def check_wandb_can_log() -> None:
    """Fail before anything is written when wandb would need an API key it does not have."""
    mode = os.environ.get("WANDB_MODE", "online")
    if mode not in OFFLINE_MODES and not has_wandb_credentials():
        raise UserError(
            "wandb has no API key: run `wandb login` or set WANDB_API_KEY, "
            "or set WANDB_MODE=offline to log locally and `wandb sync` later"
        )


def has_wandb_credentials() -> bool:
    """An API key from the environment or from `wandb login` (stored in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger(RunLogger):
    def __init__(self, run_dir: Path, config: argparse.Namespace, spec: DataSpec) -> None:
        check_wandb_can_log()
        self.run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            name=config.name,
            dir=run_dir,
            config={**config_to_dict(config), "classes": list(spec.class_names)},
            mode=os.environ.get("WANDB_MODE", "online"),
        )
        self.run.define_metric("val_acc", summary="max")
        self.run.define_metric("val_loss", summary="min")

    def log_start(self, model: nn.Module, images: torch.Tensor) -> None:
        grid = make_grid(images[:64].float(), nrow=8, normalize=True, scale_each=True)
        self.run.log({"inputs/train_batch": wandb.Image(grid)}, step=0)

    def log_step(self, values: dict, step: int) -> None:
        self.run.log({f"step/{key}": value for key, value in values.items()}, step=step)

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        self.run.log(record, step=step)

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        for key, value in summary.items():
            self.run.summary[f"best_{key}"] = value
        if best_checkpoint.exists():
            artifact = wandb.Artifact(f"{self.run.name}-best", type="model")
            artifact.add_file(str(best_checkpoint))
            self.run.log_artifact(artifact)
        self.run.finish()
