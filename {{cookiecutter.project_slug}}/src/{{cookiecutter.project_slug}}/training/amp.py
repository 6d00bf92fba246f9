"""--amp: autocast in bfloat16 or float16, plus a GradScaler for float16."""

import logging
import warnings
from collections.abc import Mapping

import torch

from ..errors import UserError
from .precision import FullPrecision, register_precision


class MixedPrecision(FullPrecision):
    """Autocast settings and the GradScaler (a pass-through unless float16 is active)."""

    def __init__(self, dtype_name: str, device: torch.device) -> None:
        self.dtype = getattr(torch, dtype_name)
        self.device_type = device.type
        if device.type == "cpu" and self.dtype == torch.float16:
            warnings.warn(
                "float16 autocast on CPU is emulated and slow; use --amp-dtype bfloat16 on CPU",
                stacklevel=2,
            )
        if device.type == "cuda" and self.dtype == torch.bfloat16:
            if not torch.cuda.is_bf16_supported():
                raise UserError("this GPU has no bfloat16 support: pass --amp-dtype float16")
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)  # skipped when float16 gradients overflowed
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scaler.load_state_dict(state)


@register_precision
def build_mixed_precision(
    feature_flags: Mapping[str, object], device: torch.device, log: logging.Logger
) -> MixedPrecision | None:
    if not feature_flags["amp"]:
        return None
    dtype_name = feature_flags["amp_dtype"]
    scaler_note = " with GradScaler" if dtype_name == "float16" else ""
    log.info("mixed precision: autocast %s%s", dtype_name, scaler_note)
    return MixedPrecision(dtype_name, device)
