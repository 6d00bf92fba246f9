"""A training sampler that batches texts of similar lengths, so that padding stays low."""

import itertools
import logging

import torch
from torch.utils.data import DistributedSampler, Sampler

from .sampling import derived_seed

log = logging.getLogger("train.data")

# Texts are sorted by length within pools of this many batches: larger pools pad less, smaller
# ones mix lengths more within an epoch.
POOL_BATCHES = 100
ORDER_SALT = 0x4C42


class LengthBucketedShuffle(Sampler[tuple[int, int]]):
    """Each epoch, this rank's share of a seeded shuffle (DistributedSampler's, so the ranks'
    shares are disjoint), cut into pools of POOL_BATCHES batches; each pool sorted by length and
    cut into batches; the full batches' order shuffled, the partial one last.

    The order depends only on (seed, epoch, rank), so a resumed run continues from any
    position of it (`set_epoch(epoch, start)`) with the same batches.
    """

    def __init__(self, lengths, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.lengths = torch.as_tensor(lengths)
        self.shares = DistributedSampler(
            range(len(self.lengths)), world_size, rank, shuffle=True, seed=seed
        )
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.shares.set_epoch(epoch)
        self.epoch, self.start = epoch, start
        if start == 0:
            log.info(
                "epoch %d: %.1f %% of the batches' tokens are padding",
                epoch + 1,
                100 * padding_share(self.batches(), self.lengths),
            )

    def __len__(self) -> int:
        return len(self.shares)

    def __iter__(self):
        order = itertools.chain.from_iterable(self.batches())
        for index in itertools.islice(order, self.start, None):
            yield index, derived_seed(self.seed, self.epoch, index)

    def batches(self) -> list[list[int]]:
        share = torch.tensor(list(self.shares))
        pool_size = self.batch_size * POOL_BATCHES
        full, partial = [], []
        for pool in share.split(pool_size):
            by_length = pool[torch.argsort(self.lengths[pool], stable=True)]
            for batch in by_length.split(self.batch_size):
                (full if len(batch) == self.batch_size else partial).append(batch.tolist())
        generator = torch.Generator().manual_seed(
            derived_seed(ORDER_SALT, self.seed, self.epoch, self.rank)
        )
        shuffled = [full[position] for position in torch.randperm(len(full), generator=generator)]
        return shuffled + partial


def padding_share(batches: list[list[int]], lengths: torch.Tensor) -> float:
    """The share of padding among the tokens of batches padded to their longest text."""
    real = padded = 0
    for batch in batches:
        batch_lengths = lengths[batch]
        real += int(batch_lengths.sum())
        padded += int(batch_lengths.max()) * len(batch)
    return 1 - real / max(padded, 1)
