"""DataLoaders: the seeded training sampler (shuffled or class-balanced, sharded across DDP
ranks), a disjoint validation shard per rank, workers, and the task's collate_fn."""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    Sampler,
)

from ..config.schema import DataConfig
from ..errors import UserError
from .labels import training_labels
from .sampling import ClassBalancedSampler, SeededAugmentation, SeededShuffle, ShardSampler
from .spec import DataSpec, per_class

log = logging.getLogger("train.data")


@dataclass(frozen=True)
class Placement:
    """Where the loaders run: this process's rank among `world_size`, whether batches go to a
    GPU (pinned memory), and whether the dataset decodes files (worker processes pay off)."""

    rank: int
    world_size: int
    pin_memory: bool
    decodes_files: bool
    worker_init: Callable[[int], None] | None = None  # what each worker process runs first


def build_loaders(
    train: Dataset,
    val: Dataset,
    spec: DataSpec,
    config: DataConfig,
    collate_fns: tuple,
    placement: Placement,
    sampler: Sampler[tuple[int, int]] | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Loaders whose shuffling and augmentation depend only on (seed, epoch, sample);
    `collate_fns` make the task's training and validation batches; `sampler`: the task's own
    training sampler, if it has one.

    The last, partial batch is kept unless it holds a single sample, which BatchNorm cannot
    normalise: small datasets train on every sample.
    """
    rank, world_size = placement.rank, placement.world_size
    if sampler is None:
        sampler = training_sampler(train, spec, config, rank, world_size)
    if config.batch_size > len(sampler):
        raise UserError(
            f"--batch-size {config.batch_size} is larger than the training set "
            f"({len(sampler)} samples per process): lower --batch-size"
        )
    num_workers = config.num_workers
    if num_workers is None:
        num_workers = default_num_workers(placement.decodes_files, local_world_size(world_size))
    workers = {
        "num_workers": num_workers,
        "pin_memory": placement.pin_memory,
        "persistent_workers": num_workers > 0,
        # Worker seeds do not shape the data (samples carry their own); a private generator
        # keeps the draws that pick them from moving the training process's RNG.
        "generator": torch.Generator().manual_seed(config.seed + rank),
        "worker_init_fn": placement.worker_init,
    }
    train_loader = DataLoader(
        SeededAugmentation(train),
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate_fns[0],
        drop_last=len(sampler) % config.batch_size == 1,
        **workers,
    )
    val_loader = DataLoader(
        val,
        batch_size=config.batch_size,
        sampler=ShardSampler(len(val), rank, world_size),
        collate_fn=collate_fns[1],
        **workers,
    )
    return train_loader, val_loader


def training_sampler(
    train: Dataset, spec: DataSpec, config: DataConfig, rank: int, world_size: int
) -> Sampler[tuple[int, int]]:
    if not config.balanced_sampling:
        return SeededShuffle(train, rank, world_size, config.seed)
    labels = training_labels(train)
    counts = torch.bincount(labels, minlength=spec.num_classes).tolist()
    log.info(
        "balanced sampling: each class equally likely in every draw; training samples per "
        "class: %s",
        per_class(spec.class_names, counts),
    )
    return ClassBalancedSampler(labels, rank, world_size, config.seed)


def local_world_size(world_size: int) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size))


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_num_workers(decodes_files: bool, local_world_size: int) -> int:
    """Workers decode files in parallel; in-memory datasets gain nothing from them."""
    if not decodes_files:
        return 0
    return max(1, min(8, available_cores() // max(1, local_world_size)))


def all_samples(splits: dict[str, Dataset]) -> Dataset:
    return ConcatDataset([splits[name] for name in sorted(splits)])
