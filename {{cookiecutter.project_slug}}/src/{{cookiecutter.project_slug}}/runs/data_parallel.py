"""--dp: single-process nn.DataParallel over every visible GPU."""

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ..config.schema import Config
from .runtime import Runtime, TrainFunction, register_launcher, resolve_device


@dataclass(frozen=True)
class DataParallelRuntime(Runtime):
    """One process that trains on every visible GPU through nn.DataParallel."""

    def wrap(self, model: nn.Module, log: logging.Logger) -> nn.Module:
        """Wrapped even on one device (where DataParallel passes batches straight through), so
        every machine runs the same code path."""
        gpus = torch.cuda.device_count() if self.device.type == "cuda" else 0
        if gpus < 2:
            log.warning(
                "--dp does nothing here: %d GPU(s) on %s, DataParallel needs two or more; "
                "training on one device",
                gpus,
                self.device,
            )
        else:
            log.info("--dp: DataParallel over %d GPUs", gpus)
        return nn.DataParallel(model)


@register_launcher
def launch_data_parallel(config: Config, train: TrainFunction) -> bool:
    if not config.extras["dp"]:
        return False
    train(config, DataParallelRuntime(resolve_device(config.run.device, 0)))
    return True
