"""DistributedDataParallel under torchrun: process group, wrapping and collectives."""

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config.schema import Config
from .runtime import (
    Runtime,
    TrainFunction,
    register_launcher,
    resolve_device,
)


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@register_launcher
def launch_distributed(config: Config, train: TrainFunction) -> bool:
    """Train in the process group of the torchrun launch this process belongs to."""
    if not launched_by_torchrun():
        return False
    local_rank = int(os.environ["LOCAL_RANK"])
    device = resolve_device(config.run.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store, rank, world_size = restart_scoped_store()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    try:
        host_group = dist.new_group(backend="gloo")
        runtime = DistributedRuntime(device, dist.get_rank(), dist.get_world_size(), host_group)
        train(config, runtime)
    finally:
        dist.destroy_process_group()
    return True


def restart_scoped_store() -> tuple[dist.Store, int, int]:
    """torchrun's rendezvous store, with keys of this restart round's own.

    The store outlives a --max-restarts restart; without the prefix the new workers would read
    the addresses the dead ones published and fail to connect.
    """
    store, rank, world_size = next(dist.rendezvous("env://"))
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"restart{restart}", store), rank, world_size


@dataclass(frozen=True)
class DistributedRuntime(Runtime):
    """One of `world_size` DDP processes; the collectives run over the process group, the
    per-step stop vote over `host_group` (gloo, CPU tensors)."""

    host_group: dist.ProcessGroup | None = None

    def wrap(self, model: nn.Module, log: logging.Logger) -> nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def gradient_sync(self, model: nn.Module, enabled: bool) -> AbstractContextManager:
        """Skip the gradient all-reduce on micro-batches that do not step the optimizer."""
        return nullcontext() if enabled else model.no_sync()

    def sum_in_place(self, tensor: torch.Tensor) -> None:
        dist.all_reduce(tensor)

    def gather(self, value) -> list:
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def any_rank(self, flag: bool) -> bool:
        # Asked after every optimizer update: on the host, so that reading the answer never
        # waits for the GPU to finish its queued work (a CUDA tensor's .item() would).
        value = torch.tensor([float(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.host_group)
        return bool(value.item())

    def rank0_decides(self, value):
        decision = [value]
        dist.broadcast_object_list(decision, src=0)
        return decision[0]

    def share_buffers(self, model: nn.Module) -> None:
        """Each rank's last step updated its own BatchNorm statistics; without this, ranks would
        validate slightly different models and rank 0 would save yet another."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        dist.barrier()

    def check_replicas_agree(self, model: nn.Module, log: logging.Logger) -> None:
        divergence = max_divergence_from_rank0(model)
        if divergence == 0.0:
            log.info("parameters identical on all %d ranks", self.world_size)
        else:
            log.warning("parameters differ across ranks by up to %.3g", divergence)


def max_divergence_from_rank0(model: nn.Module) -> float:
    """The largest |parameter - rank 0's parameter| on any rank: 0.0 when replicas agree."""
    flat = torch.cat([parameter.detach().flatten().float() for parameter in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    divergence = (flat - reference).abs().max()
    dist.all_reduce(divergence, op=dist.ReduceOp.MAX)
    return float(divergence)
