"""A training sampler that batches texts of similar lengths, so that padding stays low."""

import itertools
import logging
import math

import torch
from torch.utils.data import Sampler

from .sampling import derived_seed

log = logging.getLogger("train.data")

# Texts are sorted by length within pools of this many batches: larger pools pad less, smaller
# ones mix lengths more within an epoch.
POOL_BATCHES = 100
ORDER_SALT = 0x4C42


class LengthBucketedShuffle(Sampler[tuple[int, int]]):
    """Each epoch, one seeded shuffle of every sample (the same on every rank), padded by
    wrapping around to a multiple of the world size as DistributedSampler pads; cut into pools
    of POOL_BATCHES batches per rank, each pool sorted by length; then cut into batches, whose
    order is shuffled, and dealt out whole: rank r takes full batches r, r + world_size, ...,
    then its share of the longest texts' remainder. The ranks' batches are disjoint and each
    spans texts of similar lengths drawn from all the data, so padding stays as low under DDP
    as in one process.

    The order depends only on (seed, epoch, rank), so a resumed run continues from any
    position of it (`set_epoch(epoch, start)`) with the same batches.
    """

    def __init__(self, lengths, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(len(self.lengths) / world_size)
        self.epoch = 0
        self.start = 0
        self.dealt = self.deal()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        self.dealt = self.deal()
        if start == 0:
            every_rank = [batch for batches in self.dealt for batch in batches]
            log.info(
                "epoch %d: %.1f %% of the batches' tokens are padding",
                epoch + 1,
                100 * padding_share(every_rank, self.lengths),
            )

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        order = itertools.chain.from_iterable(self.batches())
        for index in itertools.islice(order, self.start, None):
            yield index, derived_seed(self.seed, self.epoch, index)

    def batches(self, rank: int | None = None) -> list[list[int]]:
        """This rank's (or `rank`'s) batches of the epoch, in order."""
        return self.dealt[self.rank if rank is None else rank]

    def deal(self) -> list[list[list[int]]]:
        """Every rank's batches of the epoch, in order."""
        generator = torch.Generator().manual_seed(derived_seed(ORDER_SALT, self.seed, self.epoch))
        by_length = self.sorted_pools(generator)
        full_size = self.world_size * (self.per_rank // self.batch_size) * self.batch_size
        full = by_length[:full_size].split(self.batch_size)
        dealt = [
            full[position].tolist() for position in torch.randperm(len(full), generator=generator)
        ]
        every_rank = [dealt[rank :: self.world_size] for rank in range(self.world_size)]
        remainder = by_length[full_size:]
        if len(remainder):
            for batches, share in zip(every_rank, remainder.chunk(self.world_size), strict=True):
                batches.append(share.tolist())
        return every_rank

    def sorted_pools(self, generator: torch.Generator) -> torch.Tensor:
        """Every sample once (a few twice, to even the ranks' shares), shuffled, then sorted by
        length within each pool."""
        shuffled = torch.randperm(len(self.lengths), generator=generator)
        total = self.per_rank * self.world_size
        padded = shuffled.repeat(math.ceil(total / len(shuffled)))[:total]
        pools = padded.split(self.batch_size * self.world_size * POOL_BATCHES)
        return torch.cat([pool[torch.argsort(self.lengths[pool], stable=True)] for pool in pools])


def padding_share(batches: list[list[int]], lengths: torch.Tensor) -> float:
    """The share of padding among the tokens of batches padded to their longest text."""
    real = padded = 0
    for batch in batches:
        batch_lengths = lengths[batch]
        real += int(batch_lengths.sum())
        padded += int(batch_lengths.max()) * len(batch)
    return 1 - real / max(padded, 1)
