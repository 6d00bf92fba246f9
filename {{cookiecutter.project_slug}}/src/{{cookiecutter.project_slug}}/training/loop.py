"""One training epoch and one evaluation pass."""

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import CatMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from tqdm import tqdm

from ..data.loaders import DataSpec
from ..errors import UserError
from ..runs.runtime import Runtime
from .early_stopping import EarlyStopping
from .ema import ExponentialMovingAverage
from .precision import FullPrecision


@dataclass
class Optimisation:
    """Everything one optimizer update needs.

    `criterion` is the training loss (label smoothing and class weights included); validation
    always scores plain cross-entropy, so val_loss compares across runs whatever their recipe.
    `ema`, when on, is updated after every optimizer step.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    accum_steps: int
    clip_grad_norm: float | None
    precision: FullPrecision
    ema: ExponentialMovingAverage | None = None


@dataclass
class Progress:
    """Where training stands; checkpointed.

    `epoch` counts completed epochs (so it is also the 0-based index of the epoch being
    trained); a run stopped inside that epoch has done `batches_done` of its micro-batches,
    whose running sums are `partial_sums`.
    """

    epoch: int = 0
    global_step: int = 0
    batches_done: int = 0
    partial_sums: list[float] | None = None


@dataclass
class Training:
    """What a run builds once and checkpoints: `model` is the raw module (never wrapped), whose
    inputs are laid out in `memory_format`; `split_record` is the carved split it trains and
    validates on (data.run_split_record)."""

    model: nn.Module
    optimisation: Optimisation
    stopper: EarlyStopping
    progress: Progress
    spec: DataSpec
    train_loader: DataLoader
    val_loader: DataLoader
    memory_format: torch.memory_format = torch.contiguous_format
    split_record: dict | None = None

    @property
    def selecting_model(self) -> nn.Module:
        """The model whose scores select best.pt, and that evaluate and export use: the EMA
        when on, else the model itself (never a multi-GPU wrapper)."""
        ema = self.optimisation.ema
        return self.model if ema is None else ema.module


class NonFiniteLossError(UserError):
    pass


StepLogger = Callable[[dict, int], None]


def never() -> bool:
    return False


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimisation: Optimisation,
    progress: Progress,
    runtime: Runtime,
    log_every: int,
    log_step: StepLogger,
    show_progress: bool,
    should_stop: Callable[[], bool] = never,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict | None:
    """Train for (the rest of) an epoch; return its mean loss, accuracy and throughput here.

    When should_stop() says so after an optimizer update, return None instead, with `progress`
    recording how far the epoch got. Running sums stay on the device: the host reads them only
    every `log_every` updates.
    """
    model.train()
    device = runtime.device
    sums = torch.tensor(progress.partial_sums or [0.0, 0.0, 0.0], device=device)
    started = time.perf_counter()
    last_batch = len(loader) - 1
    bar = tqdm(loader, desc=f"epoch {progress.epoch + 1}", disable=not show_progress, leave=False)
    for index, (images, targets) in enumerate(bar, start=progress.batches_done):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        is_update = (index + 1) % optimisation.accum_steps == 0 or index == last_batch
        group_size = micro_batches_in_group(index, len(loader), optimisation.accum_steps)
        with runtime.gradient_sync(model, enabled=is_update):
            loss, logits = forward_backward(model, images, targets, optimisation, group_size)
        accumulate(sums, loss, logits, targets)
        if is_update:
            optimizer_step(model, optimisation)
            progress.global_step += 1
            if progress.global_step % log_every == 0:
                values = read_running_means(sums, progress)
                values["lr"] = optimisation.optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{values['train_loss']:.4f}", lr=f"{values['lr']:.2e}")
                log_step(values, progress.global_step)
            if should_stop():
                progress.batches_done, progress.partial_sums = index + 1, sums.tolist()
                return None
    progress.batches_done, progress.partial_sums = 0, None
    runtime.sum_in_place(sums)
    seconds = time.perf_counter() - started
    values = read_running_means(sums, progress)
    values["samples_per_second"] = float(sums[2]) / seconds
    values["epoch_seconds"] = seconds
    return values


def forward_backward(model, images, targets, optimisation: Optimisation, group_size: int):
    """Add this micro-batch's share of its update's mean loss gradient."""
    with optimisation.precision.autocast():
        logits = model(images)
        loss = optimisation.criterion(logits, targets)
    optimisation.precision.backward(loss / group_size)
    return loss.detach(), logits.detach()


def optimizer_step(model: nn.Module, optimisation: Optimisation) -> None:
    precision = optimisation.precision
    if optimisation.clip_grad_norm is not None:
        precision.unscale_gradients(optimisation.optimizer)  # clip true gradients
        nn.utils.clip_grad_norm_(model.parameters(), optimisation.clip_grad_norm)
    precision.step(optimisation.optimizer)
    optimisation.optimizer.zero_grad(set_to_none=True)
    optimisation.scheduler.step()
    if optimisation.ema is not None:
        optimisation.ema.update_parameters(model)


def micro_batches_in_group(index: int, num_batches: int, accum_steps: int) -> int:
    """How many micro-batches share batch `index`'s optimizer update: the last may be short."""
    group_start = index - index % accum_steps
    return min(accum_steps, num_batches - group_start)


def accumulate(sums: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, targets) -> None:
    """Add a batch to the running sums; soft (MixUp/CutMix) targets count their top class."""
    hard_targets = targets.argmax(dim=1) if targets.ndim == 2 else targets
    batch = targets.shape[0]
    sums[0] += loss.float() * batch
    sums[1] += (logits.argmax(dim=1) == hard_targets).sum()
    sums[2] += batch


def read_running_means(sums: torch.Tensor, progress: Progress) -> dict:
    """Copy the running sums to the host and stop on a non-finite loss."""
    loss_sum, correct, samples = sums.tolist()
    mean_loss = loss_sum / max(samples, 1)
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"training loss became {mean_loss} by step {progress.global_step} "
            f"(epoch {progress.epoch + 1}): lower --lr, add --clip-grad-norm, or check the data"
        )
    return {"train_loss": mean_loss, "train_acc": correct / max(samples, 1)}


def validation_metrics(num_classes: int, device: torch.device) -> MetricCollection:
    """Metrics that torchmetrics reduces across DDP ranks when computed."""
    metrics = {
        "val_acc": MulticlassAccuracy(num_classes, average="micro"),
        "val_confusion": MulticlassConfusionMatrix(num_classes),
    }
    if num_classes > 5:
        metrics["val_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics).to(device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    keep_predictions: bool = False,
    show_progress: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict:
    """Loss, top-1 (top-5), per-class accuracy and confusion matrix over every rank's shard.

    The loss is plain cross-entropy. With `keep_predictions`, also every sample's class
    probabilities and target (gathering them is a collective: every rank must ask).
    """
    model.eval()
    mean_loss = MeanMetric().to(device)
    metrics = validation_metrics(num_classes, device)
    probabilities, labels = CatMetric().to(device), CatMetric().to(device)
    for images, targets in tqdm(loader, desc="val", disable=not show_progress, leave=False):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        logits = logits.float()
        mean_loss.update(nn.functional.cross_entropy(logits, targets, reduction="none"))
        metrics.update(logits, targets)
        if keep_predictions:
            probabilities.update(logits.softmax(dim=1))
            labels.update(targets)
    results = {name: value.cpu() for name, value in metrics.compute().items()}
    val_loss = float(mean_loss.compute())
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(
            f"validation loss is {val_loss}: lower --lr or add --clip-grad-norm"
        )
    summary = {"val_loss": val_loss, "val_acc": float(results["val_acc"])}
    if "val_top5" in results:
        summary["val_top5"] = float(results["val_top5"])
    summary["per_class_acc"] = per_class_accuracy(results["val_confusion"])
    summary["confusion_matrix"] = results["val_confusion"]  # a tensor: one row per true class
    if keep_predictions:
        summary["probabilities"] = probabilities.compute().cpu()
        summary["targets"] = labels.compute().cpu().long().reshape(-1)  # one image: not 0-d
    return summary


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Each class's recall from the confusion matrix; None for a class without images (its
    accuracy is unknown, not 0)."""
    images = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return [
        float(right) / float(count) if count else None
        for right, count in zip(correct.tolist(), images.tolist(), strict=True)
    ]


def validate(training: Training, runtime: Runtime, keep_predictions: bool) -> tuple[dict, dict]:
    """Scores of the model and of the model that selects best.pt (the same one without EMA).
    `keep_predictions` applies to the latter; gathering them is a collective: all ranks ask."""
    models = [training.model]
    if training.selecting_model is not training.model:
        models.append(training.selecting_model)
    scores = []
    for model in models:
        runtime.share_buffers(model)
        scores.append(
            evaluate(
                model,
                training.val_loader,
                training.spec.num_classes,
                runtime.device,
                training.optimisation.precision.autocast,
                keep_predictions=keep_predictions and model is models[-1],
                memory_format=training.memory_format,
            )
        )
    return scores[0], scores[-1]
