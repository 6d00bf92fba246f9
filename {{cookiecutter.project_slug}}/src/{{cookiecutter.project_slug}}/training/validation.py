"""One evaluation pass, for any task: the task's forward pass and scores (tasks/base.py),
reduced across DDP ranks."""

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..runs.runtime import Runtime, to_device
from ..tasks.base import Task
from .loop import NonFiniteLossError, Training


@torch.no_grad()
def score(
    model: nn.Module,
    loader: DataLoader,
    task: Task,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    keep_predictions: bool = False,
    show_progress: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict:
    """The task's scores of `model` over every rank's shard of `loader`.

    With `keep_predictions`, the scores keep every sample's prediction too (gathering them is a
    collective: every rank must ask).
    """
    model.eval()
    scores = task.validation(keep_predictions)
    for inputs, targets in tqdm(loader, desc="val", disable=not show_progress, leave=False):
        inputs = to_device(inputs, device, memory_format)
        with autocast():
            outputs = task.forward(model, inputs)
        scores.update(outputs, to_device(targets, device))
    summary = scores.compute()
    if not math.isfinite(summary["val_loss"]):
        raise NonFiniteLossError(
            f"validation loss is {summary['val_loss']}: lower --lr or add --clip-grad-norm"
        )
    return summary


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
            score(
                model,
                training.val_loader,
                training.task,
                runtime.device,
                training.optimisation.precision.autocast,
                keep_predictions=keep_predictions and model is models[-1],
                memory_format=training.memory_format,
            )
        )
    return scores[0], scores[-1]
