"""TensorBoard: scalars per step and per epoch, and hparams with the final metrics."""

import argparse
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from ..data import DataSpec

HPARAM_KEYS = ("dataset", "model", "init", "optimizer", "lr", "batch_size", "epochs", "scheduler")
EPOCH_SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "val_top5": "accuracy/val_top5",
    "lr": "lr/epoch",
    "samples_per_second": "throughput/samples_per_second",
    "epoch_seconds": "time/epoch_seconds",
}


class TensorBoardLogger:
    def __init__(self, log_dir: Path, config: argparse.Namespace, spec: DataSpec) -> None:
        self.writer = SummaryWriter(log_dir)
        self.config = config
        self.class_names = spec.class_names

    def log_step(self, values: dict, step: int) -> None:
        self.writer.add_scalar("loss/train_step", values["train_loss"], step)
        self.writer.add_scalar("lr/step", values["lr"], step)

    def log_epoch(self, record: dict, step: int) -> None:
        for key, tag in EPOCH_SCALARS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], record["epoch"])
        self.writer.flush()

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        hparams = {key: getattr(self.config, key) for key in HPARAM_KEYS}
        final = {f"hparam/{key}": value for key, value in summary.items()}
        self.writer.add_hparams(hparams, final, run_name=".")
        self.writer.close()
