"""TensorBoard: scalars, hparams, an input grid and the graph (image inputs), confusion matrix
and PR curves (classifiers), and the pictures and tables of the run's other events.

Each epoch's confusion matrix shows at most SHOWN_CLASSES classes and its PR curves cover at
most PR_CURVE_CLASSES (the most confused beyond that), so their cost does not grow with the
class count.
"""

import copy
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
{%- if cookiecutter.insight == "yes" %}
from PIL import Image
{%- endif %}
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from ..config.schema import Config
from ..data.spec import DataSpec
{%- if cookiecutter.insight == "yes" %}
from .base import (
    Embeddings,
    Figure,
    Mistake,
    RunLogger,
    is_image_batch,
    markdown_table,
    register_logger,
)
{%- else %}
from .base import Figure, RunLogger, is_image_batch, register_logger
{%- endif %}
from .pictures import confusion_picture, label_font, shown_classes

PR_CURVE_CLASSES = 10  # beyond, the most confused classes get their PR curves
HPARAM_KEYS = ("dataset", "model", "init", "optimizer", "lr", "batch_size", "epochs", "scheduler")
EPOCH_SCALARS = {
    "epoch": "epoch",
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "ema_val_loss": "loss/val_ema",
    "ema_val_acc": "accuracy/val_ema",
    "val_top5": "accuracy/val_top5",
    "lr": "lr/epoch",
    "samples_per_second": "throughput/samples_per_second",
    "epoch_seconds": "time/epoch_seconds",
}

# A task's other means: <metric>/<split>, beside the ones above.
SPLIT_PREFIXES = {"ema_val_": "val_ema", "val_": "val", "train_": "train"}


def scalar_tag(key: str) -> str | None:
    """Where an epoch record's value is plotted (None: not plotted, as the step, its x axis)."""
    if key in EPOCH_SCALARS:
        return EPOCH_SCALARS[key]
    for prefix, split in SPLIT_PREFIXES.items():
        if key.startswith(prefix):
            return f"{key.removeprefix(prefix)}/{split}"
    return None


@register_logger
class TensorBoardLogger(RunLogger):
    """Every point is plotted against the optimizer step, so that one purge_step serves all."""

    needs_predictions = True  # for the PR curves

    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        log_dir = run_dir / "tensorboard"
        if resumed is None and log_dir.exists():
            # A run starts afresh only in a folder without a checkpoint: what is there was drawn
            # by an attempt that died before saving, and would mix with this run's points.
            shutil.rmtree(log_dir)
        # Points written after the resumed checkpoint (by a run that then died) are dropped
        # when TensorBoard reads the folder, so a resumed run draws each step once.
        purge_step = None if resumed is None else resumed["global_step"] + 1
        self.writer = SummaryWriter(log_dir, purge_step=purge_step)
        self.config = config
        self.class_names = spec.class_names
        self.font = label_font([*spec.class_names, "(no samples)"])

    def log_start(self, model: nn.Module, inputs: Callable[[], object]) -> None:
        """An image batch's grid and the model's graph traced on one of its images; nothing
        for other inputs."""
        batch = inputs()
        if not is_image_batch(batch):
            return
        grid = make_grid(batch[:64].float(), nrow=8, normalize=True, scale_each=True)
        self.writer.add_image("inputs/train_batch", grid, 0)
        # Tracing runs a forward pass: use a copy in eval mode so BatchNorm statistics stay put.
        traced = copy.deepcopy(model).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # add_graph still uses jit.trace
            self.writer.add_graph(traced, batch[:1].to(next(model.parameters()).device))

    def log_step(self, values: dict, step: int) -> None:
        self.writer.add_scalar("loss/train_step", values["train_loss"], step)
        self.writer.add_scalar("lr/step", values["lr"], step)

    def log_validation(self, results: dict, step: int) -> None:
        """A classifier's confusion matrix and PR curves; a task without a confusion matrix
        has only scalars, which log_epoch plots."""
        if "confusion_matrix" not in results:
            return
        matrix = results["confusion_matrix"]
        picture = confusion_picture(matrix, shown_classes(matrix), self.class_names, self.font)
        self.writer.add_image("val/confusion_matrix", np.asarray(picture), step, dataformats="HWC")
        probabilities, targets = results["probabilities"], results["targets"]
        for index in shown_classes(matrix, PR_CURVE_CLASSES):
            if matrix[index].sum():  # a class without samples has no PR curve
                name, scores = self.class_names[index], probabilities[:, index]
                self.writer.add_pr_curve(f"pr/{name}", targets == index, scores, step)
        self.writer.flush()  # drawn after the epoch's checkpoint: a stop may come next

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        for key, value in record.items():
            tag = scalar_tag(key)
            if tag is not None and isinstance(value, float | int):
                self.writer.add_scalar(tag, value, step)
        every = self.config.extras["histogram_every"]
        if every and record["epoch"] % every == 0:
            for name, parameter in model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", parameter, step)
        self.writer.flush()

    def log_figure(self, figure: Figure, step: int) -> None:
        self.writer.add_image(f"{figure.name}/val", figure.grid, step)
{%- if cookiecutter.insight == "yes" %}

    def log_embeddings(self, embeddings: Embeddings, step: int) -> None:
        self.writer.add_embedding(
            embeddings.features,
            metadata=embeddings.metadata(),
            label_img=embeddings.thumbnails,
            global_step=step,
            tag="val_embeddings",
            metadata_header=list(embeddings.columns),
        )

    def log_mistakes(self, mistakes: list[Mistake], grid: Image.Image | None, step: int) -> None:
        """The gallery of pictures, or the texts' table."""
        if grid is None:
            self.writer.add_text("val/mistakes", markdown_table(mistakes), step)
        else:
            self.writer.add_image("val/mistakes", np.asarray(grid), step, dataformats="HWC")
{%- endif %}

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        flags = self.config.to_dict()
        hparams = {key: flags[key] for key in HPARAM_KEYS}
        final = {f"hparam/{key}": value for key, value in summary.items()}
        self.writer.add_hparams(hparams, final, run_name=".")
        self.writer.close()
