"""The numeric precision of a training step: float32, or autocast in bfloat16 / float16 (a
GradScaler guards float16 gradients). Switched off, every call is a pass-through."""

import logging
{%- if cookiecutter.mixed_precision == "yes" %}
import warnings
{%- endif %}
from contextlib import AbstractContextManager, nullcontext

import torch
{%- if cookiecutter.mixed_precision == "yes" %}

from ..errors import UserError
{%- endif %}


class Precision:
    """Autocast settings and the GradScaler; `dtype_name` None means float32 throughout."""

    def __init__(self, dtype_name: str | None, device: torch.device) -> None:
        self.enabled = dtype_name is not None
        self.dtype = getattr(torch, dtype_name) if self.enabled else None
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager:
        if not self.enabled:  # a disabled torch.autocast still costs tens of microseconds a step
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Make the gradients true values before they are clipped."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)  # skipped when float16 gradients overflowed
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scaler.load_state_dict(state)
{%- if cookiecutter.mixed_precision == "yes" %}


def build_precision(extra_flags, device: torch.device, log: logging.Logger) -> Precision:
    """--amp's autocast dtype, checked against the device; float32 without --amp."""
    if not extra_flags["amp"]:
        return Precision(None, device)
    dtype_name = extra_flags["amp_dtype"]
    if device.type == "cpu" and dtype_name == "float16":
        warnings.warn(
            "float16 autocast on CPU is emulated and slow; use --amp-dtype bfloat16 on CPU",
            stacklevel=2,
        )
    if device.type == "cuda" and dtype_name == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bfloat16 support: pass --amp-dtype float16")
    scaler_note = " with GradScaler" if dtype_name == "float16" else ""
    log.info("mixed precision: autocast %s%s", dtype_name, scaler_note)
    return Precision(dtype_name, device)
{%- else %}


def build_precision(extra_flags, device: torch.device, log: logging.Logger) -> Precision:
    """float32 throughout: this project was generated without mixed precision."""
    return Precision(None, device)
{%- endif %}
