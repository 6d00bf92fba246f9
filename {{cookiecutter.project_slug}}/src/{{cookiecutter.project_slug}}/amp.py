"""Automatic mixed precision: autocast plus, for float16, a GradScaler."""

import warnings

import torch

from .errors import UserError


class MixedPrecision:
    """Autocast settings and the GradScaler (a pass-through unless float16 is active)."""

    def __init__(self, enabled: bool, dtype_name: str, device: torch.device) -> None:
        self.enabled = enabled
        self.dtype = getattr(torch, dtype_name)
        self.device_type = device.type
        if enabled and device.type == "cpu" and self.dtype == torch.float16:
            warnings.warn(
                "float16 autocast on CPU is emulated and slow; use --amp-dtype bfloat16 on CPU",
                stacklevel=2,
            )
        if enabled and device.type == "cuda" and self.dtype == torch.bfloat16:
            if not torch.cuda.is_bf16_supported():
                raise UserError("this GPU has no bfloat16 support: pass --amp-dtype float16")
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=enabled and self.dtype == torch.float16
        )

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)
