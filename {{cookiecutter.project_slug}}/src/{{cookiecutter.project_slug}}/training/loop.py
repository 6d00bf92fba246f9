"""One training epoch, for any task: the task turns batches into a loss (tasks/base.py), the
loop does the rest (accumulation, clipping, precision, EMA, DDP gradient sync, stop requests)."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import UserError
from ..runs.runtime import Runtime, to_device
from ..tasks.base import Task
from .early_stopping import EarlyStopping
from .ema import ExponentialMovingAverage
from .precision import Precision


@dataclass
class Optimisation:
    """Everything one optimizer update needs.

    `ema`, when on, is updated after every optimizer step.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    accum_steps: int
    clip_grad_norm: float | None
    precision: Precision
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
    validates on (DatasetInfo.split_record)."""

    model: nn.Module
    optimisation: Optimisation
    stopper: EarlyStopping
    progress: Progress
    task: Task
    spec: object  # the data's spec (data/spec.py), as the model, checkpoints and exports read it
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
    training: Training,
    runtime: Runtime,
    log_every: int,
    log_step: StepLogger,
    show_progress: bool,
    should_stop: Callable[[], bool] = never,
) -> dict | None:
    """Train for (the rest of) an epoch; return its mean loss, the task's training metrics and
    the throughput here.

    When should_stop() says so after an optimizer update, return None instead, with `progress`
    recording how far the epoch got. Running sums stay on the device: the host reads them only
    every `log_every` updates.
    """
    model.train()
    optimisation, progress, task = training.optimisation, training.progress, training.task
    device = runtime.device
    running = task.running_sums(progress.partial_sums, device)
    started = time.perf_counter()
    last_batch = len(loader) - 1
    bar = tqdm(loader, desc=f"epoch {progress.epoch + 1}", disable=not show_progress, leave=False)
    for index, (inputs, targets) in enumerate(bar, start=progress.batches_done):
        inputs = to_device(inputs, device, training.memory_format)
        targets = to_device(targets, device)
        is_update = (index + 1) % optimisation.accum_steps == 0 or index == last_batch
        group_size = micro_batches_in_group(index, len(loader), optimisation.accum_steps)
        with runtime.gradient_sync(model, enabled=is_update):
            loss, outputs = forward_backward(model, inputs, targets, training, group_size)
        running.add(loss, outputs, targets)
        if is_update:
            optimizer_step(model, optimisation)
            progress.global_step += 1
            if progress.global_step % log_every == 0:
                values = read_running_means(running.totals(), training)
                values["lr"] = optimisation.optimizer.param_groups[0]["lr"]
                # The bar's next timed refresh shows them: redrawing it here costs every log.
                shown = {"loss": f"{values['train_loss']:.4f}", "lr": f"{values['lr']:.2e}"}
                bar.set_postfix(shown, refresh=False)
                log_step(values, progress.global_step)
            if should_stop():
                progress.batches_done, progress.partial_sums = index + 1, running.totals().tolist()
                return None
    progress.batches_done, progress.partial_sums = 0, None
    totals = running.totals()
    runtime.sum_in_place(totals)
    seconds = time.perf_counter() - started
    values = read_running_means(totals, training)
    values["samples_per_second"] = float(totals[-1]) / seconds
    values["epoch_seconds"] = seconds
    return values


def forward_backward(model, inputs, targets, training: Training, group_size: int):
    """Add this micro-batch's share of its update's mean loss gradient."""
    precision = training.optimisation.precision
    with precision.autocast():
        loss, outputs = training.task.training_loss(model, inputs, targets)
    precision.backward(loss if group_size == 1 else loss / group_size)
    return loss.detach(), detached(outputs)


def detached(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.detach()
    if isinstance(outputs, dict):
        return {key: detached(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(detached(value) for value in outputs)
    return outputs


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


def read_running_means(sums: torch.Tensor, training: Training) -> dict:
    """Copy the running sums to the host and stop on a non-finite loss."""
    loss_sum, *task_sums, samples = sums.tolist()
    mean_loss = loss_sum / max(samples, 1)
    progress = training.progress
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"training loss became {mean_loss} by step {progress.global_step} "
            f"(epoch {progress.epoch + 1}): lower --lr, add --clip-grad-norm, or check the data"
        )
    means = {"train_loss": mean_loss}
    for name, value in zip(training.task.train_metrics, task_sums, strict=True):
        means[f"train_{name}"] = value / max(samples, 1)
    return means
