"""What optional parts do at set points of a training run, besides what the loggers record:
each part's module registers its hook type when imported (config/extras.py), and the writing
process builds one hook of each type per run. The other DDP ranks build none, so a hook never
takes part in a collective: the ranks neither compute its work nor wait for it."""

import logging
from pathlib import Path

from torch import nn

from ..config.schema import Config
from ..loggers.base import ExperimentLoggers
from ..runs.preemption import StopRequest
from ..runs.runtime import Runtime
from .loop import Training


class TrainingHook:
    """Built once the run is set up (resumed or not), before its first epoch, with what a hook
    may read of it."""

    def __init__(
        self,
        config: Config,
        training: Training,
        runtime: Runtime,
        run_dir: Path,
        log: logging.Logger,
    ) -> None:
        self.config, self.training, self.runtime = config, training, runtime
        self.run_dir, self.log = run_dir, log

    def after_validation(self, model: nn.Module, loggers: ExperimentLoggers) -> None:
        """After each epoch's validation, once its checkpoint is saved (a stop signal meanwhile
        loses no trained epoch): `model` is the one selected on (the EMA's, with --ema)."""

    def after_training(self, stop: StopRequest, loggers: ExperimentLoggers) -> None:
        """Once the epoch loop has ended (every epoch, early stopping, or `stop`), before the
        loggers finish."""


HOOK_TYPES: list[type[TrainingHook]] = []


def register_hook(hook_type: type[TrainingHook]) -> type[TrainingHook]:
    HOOK_TYPES.append(hook_type)
    return hook_type


def build_hooks(
    config: Config, training: Training, runtime: Runtime, run_dir: Path, log: logging.Logger
) -> list[TrainingHook]:
    """One hook of each registered type in the writing process; none in the others."""
    if not runtime.is_main:
        return []
    return [hook_type(config, training, runtime, run_dir, log) for hook_type in HOOK_TYPES]
