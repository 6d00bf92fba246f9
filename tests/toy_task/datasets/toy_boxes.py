"""Pictures of varying size (20 to 28 px a side), each holding one coloured square whose
channel is its class; the target is a detector's: a dict of boxes (x0, y0, x1, y1) and labels."""

import torch
from torch.utils.data import Dataset

from ..data.spec import DataSpec
from . import DatasetInfo, register

CLASSES = ("red", "green", "blue")


class ToyBoxes(Dataset):
    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, len(CLASSES), (count,), generator=generator)
        self.samples = [self.picture(int(label), generator) for label in self.labels]

    @staticmethod
    def picture(label: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        height, width = torch.randint(20, 29, (2,), generator=generator).tolist()
        image = torch.rand(3, height, width, generator=generator) * 0.2
        side = int(torch.randint(6, 11, (1,), generator=generator))
        top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
        image[label, top : top + side, left : left + side] = 1.0
        box = torch.tensor([[left, top, left + side, top + side]], dtype=torch.float32)
        return image, {"boxes": box, "labels": torch.tensor([label])}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.samples[index]


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    spec = DataSpec(CLASSES)  # pictures of any size, unnormalised
    return {"train": ToyBoxes(320, seed=1), "val": ToyBoxes(64, seed=2)}, spec


register(
    DatasetInfo(
        "toy_boxes",
        task="toy_boxes",
        build=build,
        class_names=lambda config: list(CLASSES),
    )
)
