"""Where a run executes: its device, this process's rank, and what ranks share.

`Runtime` is one process. Launch features (multi-GPU) register a launcher that builds their
own Runtime subclass, so the training loop reads the same whatever the launch.
"""

import logging
import os
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config.schema import Config
from ..errors import UserError


@dataclass(frozen=True)
class Runtime:
    """A single process: every collective is the identity."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and logs."""
        return self.rank == 0

    def wrap(self, model: nn.Module, log: logging.Logger) -> nn.Module:
        """The model as trained here (multi-GPU runtimes wrap it); `model` stays unwrapped."""
        return model

    def gradient_sync(self, model: nn.Module, enabled: bool) -> AbstractContextManager:
        """Around a backward pass; data-parallel runtimes skip the gradient all-reduce when
        `enabled` is false."""
        return nullcontext()

    def sum_in_place(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over ranks."""

    def gather(self, value) -> list:
        """Every rank's `value`, in rank order."""
        return [value]

    def any_rank(self, flag: bool) -> bool:
        return flag

    def rank0_decides(self, value):
        """Rank 0's `value`, on every rank."""
        return value

    def share_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics)."""

    def barrier(self) -> None:
        """Wait for every rank."""

    def check_replicas_agree(self, model: nn.Module, log: logging.Logger) -> None:
        """Log whether every rank ends with the same weights."""


TrainFunction = Callable[[Config, Runtime], None]
# Returns False when it does not apply to this process; else trains and returns True.
Launcher = Callable[[Config, TrainFunction], bool]
LAUNCHERS: list[Launcher] = []


def register_launcher(launcher: Launcher) -> Launcher:
    LAUNCHERS.append(launcher)
    return launcher


def launch(config: Config, train: TrainFunction) -> None:
    """Train under the registered launcher that applies, else in this one process."""
    for launcher in LAUNCHERS:
        if launcher(config, train):
            return
    train(config, Runtime(resolve_device(config.run.device, 0)))


def resolve_device(flag: str, local_rank: int) -> torch.device:
    if flag == "cpu":
        return torch.device("cpu")
    if flag == "auto":
        return (
            torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        )
    if not torch.cuda.is_available():
        raise UserError(
            f"--device {flag} asked for CUDA, but no CUDA GPU is visible: use --device cpu"
        )
    device = torch.device(flag)
    index = device.index if device.index is not None else local_rank
    if index >= torch.cuda.device_count():
        raise UserError(
            f"--device {flag}: only {torch.cuda.device_count()} GPU(s) visible, pick cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device("cuda", index)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic matrix products on CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def to_device(batch, device: torch.device, memory_format=torch.contiguous_format):
    """A batch's tensors on the device, whatever dicts, lists or tuples hold them; images
    (4-D tensors) laid out in `memory_format`."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 4:
            return batch.to(device, non_blocking=True, memory_format=memory_format)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device, memory_format) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device, memory_format) for value in batch)
    return batch
