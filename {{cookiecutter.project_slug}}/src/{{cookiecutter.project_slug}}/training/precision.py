"""The numeric precision of a training step: float32 unless a feature (mixed precision)
registers a builder whose object answers the same calls."""

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

import torch


class FullPrecision:
    """float32 throughout: no autocast, gradients as computed."""

    def autocast(self) -> AbstractContextManager:
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Make the gradients true values before they are clipped (they already are here)."""

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: float32 training keeps no state of its own."""


# Each gets the chosen features' flags and returns the precision they ask for, or None.
PrecisionBuilder = Callable[
    [Mapping[str, object], torch.device, logging.Logger], FullPrecision | None
]
PRECISION_BUILDERS: list[PrecisionBuilder] = []


def register_precision(builder: PrecisionBuilder) -> PrecisionBuilder:
    PRECISION_BUILDERS.append(builder)
    return builder


def build_precision(
    feature_flags: Mapping[str, object], device: torch.device, log: logging.Logger
) -> FullPrecision:
    for builder in PRECISION_BUILDERS:
        precision = builder(feature_flags, device, log)
        if precision is not None:
            return precision
    return FullPrecision()
