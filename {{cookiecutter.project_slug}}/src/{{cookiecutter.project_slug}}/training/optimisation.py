"""Optimizer with decay-free biases and norms, and the per-update LR schedule."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..config.schema import OptimConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay for weight matrices and kernels only: never for biases and norm layers."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
        )
    return torch.optim.AdamW(groups, lr=config.lr)


@dataclass
class WarmupSchedule:
    """LR multiplier for optimizer update `step` (0-based): linear warmup, then the decay.

    Built from the config; checkpoints keep only the scheduler's position (see
    resume.scheduler_position), so a resumed run follows the schedule its flags describe.
    """

    warmup_steps: int
    total_steps: int
    kind: str
    updates_per_epoch: int
    step_size_epochs: int
    gamma: float
    min_factor: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** (step // (self.step_size_epochs * self.updates_per_epoch))
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def updates_per_epoch(batches_per_epoch: int, accum_steps: int) -> int:
    return math.ceil(batches_per_epoch / accum_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, batches_per_epoch: int, epochs: int
) -> LambdaLR:
    per_epoch = updates_per_epoch(batches_per_epoch, config.accum_steps)
    total = per_epoch * epochs
    warmup = (
        config.warmup_steps if config.warmup_steps is not None else config.warmup_epochs * per_epoch
    )
    schedule = WarmupSchedule(
        warmup_steps=min(warmup, total),
        total_steps=total,
        kind=config.scheduler,
        updates_per_epoch=per_epoch,
        step_size_epochs=config.step_size,
        gamma=config.gamma,
        min_factor=config.min_lr / config.lr,
    )
    return LambdaLR(optimizer, schedule)
