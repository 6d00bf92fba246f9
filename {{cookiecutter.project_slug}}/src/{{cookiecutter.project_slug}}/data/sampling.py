"""Samplers whose order and augmentation depend only on (seed, epoch, sample): a resumed or
re-sharded run sees the same samples with the same augmentation."""

import itertools
import math
from contextlib import contextmanager

import torch
from torch.utils.data import (
    Dataset,
    DistributedSampler,
    Sampler,
    get_worker_info,
)

# Balanced sampling draws each epoch's samples from a seed of its own, derived from (seed, epoch).
BALANCE_SALT = 0x4241


class SeededAugmentation(Dataset):
    """Draws each sample's random augmentation from the seed its sampler key carries.

    Augmentation then depends only on (seed, epoch, sample), not on which worker process
    loads the sample or how long it has run: a resumed run sees the same samples.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        if get_worker_info() is not None:  # a worker's RNG serves nothing else: no restore
            torch.default_generator.manual_seed(seed)
            image, label = self.dataset[index]
        else:
            with seeded_cpu_rng(seed):
                image, label = self.dataset[index]
        return image, label, seed


class SeededShuffle(Sampler[tuple[int, int]]):
    """A DistributedSampler whose indices come with a per-(seed, epoch, index) sample seed."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int, seed: int) -> None:
        self.sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=seed)
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Yield `epoch`'s samples from position `start` on (where a stopped run left off)."""
        self.sampler.set_epoch(epoch)
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for index in itertools.islice(self.sampler, self.start, None):
            yield index, derived_seed(self.seed, self.epoch, index)


class ClassBalancedSampler(Sampler[tuple[int, int]]):
    """Each epoch, one draw with replacement in which every class is equally likely, then every
    sample of it: `len(labels)` draws, padded to a multiple of `world_size`.

    The draw depends only on (seed, epoch), so every rank makes the same one; rank r takes
    positions r, r + world_size, ...: disjoint shares that together make one epoch. A sample
    can be drawn twice in an epoch, so its augmentation seed comes from its position.
    """

    def __init__(self, labels: torch.Tensor, rank: int, world_size: int, seed: int) -> None:
        counts = torch.bincount(labels)
        self.class_sizes = counts[counts > 0]  # a class without samples cannot be drawn
        self.class_starts = self.class_sizes.cumsum(0) - self.class_sizes
        self.grouped_by_class = torch.argsort(labels, stable=True)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.num_samples = math.ceil(len(labels) / world_size)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Yield `epoch`'s samples from position `start` on (where a stopped run left off)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        drawn = self.epoch_draw().tolist()
        positions = range(self.rank, len(drawn), self.world_size)
        for position in itertools.islice(positions, self.start, None):
            yield drawn[position], derived_seed(self.seed, self.epoch, position)

    def epoch_draw(self) -> torch.Tensor:
        """Every rank's samples of the epoch, in order."""
        seed = derived_seed(BALANCE_SALT, self.seed, self.epoch)
        generator = torch.Generator().manual_seed(seed)
        total = self.num_samples * self.world_size
        classes = torch.randint(len(self.class_sizes), (total,), generator=generator)
        uniform = torch.rand(total, generator=generator, dtype=torch.float64)
        within_class = (uniform * self.class_sizes[classes]).long()
        return self.grouped_by_class[self.class_starts[classes] + within_class]


@contextmanager
def seeded_cpu_rng(seed: int):
    """torch's CPU generator seeded for a block, then restored as it was.

    torch.random.fork_rng would do the same but also visits every device, 50x slower.
    """
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


def derived_seed(*values: int) -> int:
    """A 63-bit seed mixed from whole numbers (it travels through batches as an int64).

    Python hashes a tuple of ints the same way in every process and run (no hash salt applies
    to ints), fifty times faster than numpy's SeedSequence: it is computed per sample.
    """
    return hash(values) & (2**63 - 1)


class ShardSampler(Sampler[int]):
    """Every rank gets a disjoint, unpadded slice, so reduced metrics count each sample once."""

    def __init__(self, dataset_size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, dataset_size, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)
