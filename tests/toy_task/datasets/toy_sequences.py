"""Token sequences of varying length (3 to 12 ids); the label says whether id 1 occurs."""

import torch
from torch.utils.data import Dataset

from ..data.spec import DataSpec
from . import DatasetInfo, register

VOCABULARY = 16
CLASSES = ("absent", "present")


class ToySequences(Dataset):
    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (count,), generator=generator)
        self.sequences = []
        for label in self.labels.tolist():
            length = int(torch.randint(3, 13, (1,), generator=generator))
            sequence = torch.randint(2, VOCABULARY, (length,), generator=generator)
            if label:
                sequence[int(torch.randint(0, length, (1,), generator=generator))] = 1
            self.sequences.append(sequence)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.sequences[index], int(self.labels[index])


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    spec = DataSpec(CLASSES)  # token sequences: no image shape or normalisation
    return {"train": ToySequences(256, seed=1), "val": ToySequences(64, seed=2)}, spec


register(
    DatasetInfo(
        "toy_sequences",
        task="toy_sequences",
        build=build,
        class_names=lambda config: list(CLASSES),
    )
)
