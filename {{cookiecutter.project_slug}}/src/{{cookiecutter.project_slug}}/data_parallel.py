"""The --dp switch: single-process nn.DataParallel over every visible GPU."""

import logging

import torch
from torch import nn


def wrap_data_parallel(model: nn.Module, device: torch.device, log: logging.Logger) -> nn.Module:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2:
        log.warning(
            "--dp does nothing here: %d GPU(s) on %s, DataParallel needs two or more; "
            "training on one device",
            gpus,
            device,
        )
        return model
    log.info("--dp: DataParallel over %d GPUs", gpus)
    return nn.DataParallel(model)
