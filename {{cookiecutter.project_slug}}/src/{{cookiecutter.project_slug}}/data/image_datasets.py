"""Image datasets the dataset modules build on: tensors in memory, or files on disk."""

import logging
from pathlib import Path

import torch
from torch.utils.data import (
    Dataset,
)
from torchvision import datasets, tv_tensors

from ..errors import UserError, first_line
from .image_files import load_rgb
from .spec import DataSpec

log = logging.getLogger("train.data")


def image_size(config, default: int, trained_spec: DataSpec | None) -> int:
    """--image-size, else the dataset's `default`; a run that continues a checkpoint (whose
    `trained_spec` is given) must keep the size the model was trained at."""
    size = config.image_size or default
    if trained_spec is not None and trained_spec.image_size not in (None, size):
        raise UserError(
            f"the checkpoint was trained with --image-size {trained_spec.image_size}: resume with "
            "the same flags, or start a new --name without --resume"
        )
    return size


class TensorImageDataset(Dataset):
    """Images already held in memory as a (N, C, H, W) float tensor in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(tv_tensors.Image(self.images[index])), int(self.labels[index])


class ImageFileDataset(Dataset):
    """Image files on disk, read as 8-bit RGB (see image_files for every mode's conversion).

    Every file passed the up-front check; one that breaks later (changed during training) is
    replaced by the next readable sample with a warning when `skip_bad_images`, else it stops
    the run with one line. Large JPEGs are decoded at reduced scale down to `min_side`.
    """

    def __init__(
        self, samples: list[tuple[Path, int]], transform, skip_bad_images: bool, min_side: int
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.skip_bad_images = skip_bad_images
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def __getitem__(self, index: int):
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                image = load_rgb(path, self.min_side)
            except Exception as error:  # Pillow raises many types; all mean "unreadable now"
                self.report_broken(path, error)
                continue
            return self.transform(image), label
        raise UserError("no image of this split can be read any more: check the data folder")

    def report_broken(self, path: Path, error: Exception) -> None:
        reason = first_line(error)
        if not self.skip_bad_images:
            raise UserError(
                f"image {path} became unreadable after the check ({reason}): restore it, "
                "or pass --skip-bad-images"
            )
        log.warning("skipped image %s: unreadable since the check (%s)", path, reason)


def split_indices(size: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic train/val split that depends only on the seed."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    val_size = max(1, round(size * val_fraction))
    return sorted(order[val_size:]), sorted(order[:val_size])


class FakeImages(datasets.FakeData):
    """torchvision's FakeData, with its labels known without building its images."""

    @property
    def labels(self) -> torch.Tensor:
        return fake_labels(self)


def fake_labels(dataset: datasets.FakeData) -> torch.Tensor:
    """FakeData draws each target right after its image, from torch's RNG seeded with the index
    (plus an offset): replay those draws, which costs far less than building the images."""
    generator = torch.Generator()
    image = torch.empty(dataset.image_size)
    labels = torch.empty(len(dataset), dtype=torch.long)
    for index in range(len(dataset)):
        generator.manual_seed(index + dataset.random_offset)
        torch.randn(dataset.image_size, generator=generator, out=image)
        labels[index] = torch.randint(0, dataset.num_classes, (1,), generator=generator)
    return labels
