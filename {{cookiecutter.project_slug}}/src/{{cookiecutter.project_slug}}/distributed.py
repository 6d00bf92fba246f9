"""DistributedDataParallel under torchrun: process group, wrapping and collectives."""

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class ProcessGroup:
    rank: int
    local_rank: int
    world_size: int


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_process_group(use_cuda: bool) -> ProcessGroup:
    """Join the group torchrun set up: nccl on GPUs, gloo on CPU."""
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return ProcessGroup(dist.get_rank(), local_rank, dist.get_world_size())


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(model: nn.Module, enabled: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on micro-batches that do not step the optimizer."""
    if enabled or not isinstance(model, DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics).

    Each rank's last training step updated its own running statistics; without this, ranks
    would validate slightly different models and rank 0 would save yet another.
    """
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(tensor: torch.Tensor) -> None:
    if dist.is_initialized():
        dist.all_reduce(tensor)


def all_gather_objects(value) -> list:
    """Every rank's value, in rank order (a single-element list outside DDP)."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's decision, on every rank."""
    if not dist.is_initialized():
        return flag
    decision = [flag]
    dist.broadcast_object_list(decision, src=0)
    return decision[0]


def max_divergence_from_rank0(model: nn.Module) -> float:
    """The largest |parameter - rank 0's parameter| on any rank: 0.0 when replicas agree."""
    flat = torch.cat([parameter.detach().flatten().float() for parameter in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    divergence = (flat - reference).abs().max()
    dist.all_reduce(divergence, op=dist.ReduceOp.MAX)
    return float(divergence)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
