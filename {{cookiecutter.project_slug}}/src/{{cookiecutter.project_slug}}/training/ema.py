"""--ema: an exponential moving average of the weights and BatchNorm buffers."""

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

# The decay warms up as (1 + n) / (WARMUP + n) over the first updates n, so the average forgets
# the random initial weights quickly; it reaches DECAY after about WARMUP / (1 - DECAY) updates.
WARMUP = 10


def warmed_up_decay(decay: float, updates: int) -> float:
    return min(decay, (1 + updates) / (WARMUP + updates))


class ExponentialMovingAverage(AveragedModel):
    """torch's AveragedModel with a warmed-up EMA decay; `module` holds the averaged model.

    The update count stays on the CPU (not moved with the model): reading it costs a GPU no
    synchronisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=self.average, use_buffers=True)
        self.decay = decay

    @torch.no_grad()
    def average(self, averaged: list, current: list, num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # BatchNorm's batch counters
            torch._foreach_copy_(averaged, current)
            return
        weight = 1 - warmed_up_decay(self.decay, int(self.n_averaged))
        torch._foreach_lerp_(averaged, current, weight)

    def state_dict_for_checkpoint(self) -> dict:
        return {"weights": self.module.state_dict(), "updates": int(self.n_averaged)}

    def load_checkpoint_state(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.n_averaged.fill_(state["updates"])


def build_ema(model: nn.Module, decay: float) -> ExponentialMovingAverage | None:
    """The average of `model` (copied now), or None when --ema is 0."""
    return ExponentialMovingAverage(model, decay) if decay > 0 else None
