"""The events a run reports; each logger overrides the ones it records."""

from pathlib import Path

import torch
from torch import nn


class RunLogger:
    def log_start(self, model: nn.Module, images: torch.Tensor) -> None:
        """Once, before the first epoch: the model and a batch of (augmented) inputs."""

    def log_step(self, values: dict, step: int) -> None:
        """Every --log-every optimizer updates: running train loss/accuracy and LR."""

    def log_validation(self, results: dict, step: int) -> None:
        """After each validation: confusion matrix and, when kept, class probabilities."""

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        """After each epoch: the metrics record written to metrics.jsonl."""

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        """At the end of training: the best values and the best checkpoint."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this logger's record; kept in checkpoints."""
        return {}


class ExperimentLoggers(RunLogger):
    """Fans each event out to every logger of the run."""

    def __init__(self, loggers: list[RunLogger]) -> None:
        self.loggers = loggers

    def log_start(self, model: nn.Module, images: torch.Tensor) -> None:
        for logger in self.loggers:
            logger.log_start(model, images)

    def log_step(self, values: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_step(values, step)

    def log_validation(self, results: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_validation(results, step)

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        for logger in self.loggers:
            logger.log_epoch(record, step, model)

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        for logger in self.loggers:
            logger.finish(summary, best_checkpoint)

    def state_dict(self) -> dict:
        return {key: value for logger in self.loggers for key, value in logger.state_dict().items()}
