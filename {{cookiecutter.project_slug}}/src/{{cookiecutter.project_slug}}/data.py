"""Datasets, transforms, batch collation and DataLoaders."""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    default_collate,
)
from torchvision import datasets, tv_tensors
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from .errors import UserError

NATIVE_IMAGE_SIZE = {"digits": 8, "cifar10": 32, "fake": 32, "image_folder": 224}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataSpec:
    """What the model needs to know about the data."""

    class_names: tuple[str, ...]
    in_channels: int
    image_size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


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
    """Image files on disk; every mode (L, RGBA, P, CMYK, ...) is converted to RGB."""

    def __init__(self, samples: list[tuple[Path, int]], transform) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise UserError(f"cannot decode image {path} ({error}): remove or replace it") from None
        return self.transform(rgb), label


class ShardSampler(Sampler[int]):
    """Every rank gets a disjoint, unpadded slice, so reduced metrics count each sample once."""

    def __init__(self, dataset_size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, dataset_size, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class BatchCollator:
    """Stacks samples into a batch and, when enabled, applies MixUp or CutMix to it.

    With mixing, labels become class-probability rows of shape (batch, num_classes).
    """

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float) -> None:
        mixers = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None

    def __call__(self, samples):
        images, labels = default_collate(samples)
        if self.mix is not None:
            images, labels = self.mix(images, labels)
        return images, labels


def split_indices(size: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic train/val split that depends only on the seed."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    val_size = max(1, round(size * val_fraction))
    return sorted(order[val_size:]), sorted(order[:val_size])


def image_transforms(image_size: int, native_size: int, mean, std) -> tuple[v2.Compose, v2.Compose]:
    """Train (augmented) and eval transforms for images of any input type."""
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if image_size <= 32:
        augment = [
            v2.Resize((image_size, image_size), antialias=True),
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1)),
        ]
    else:
        augment = [
            v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    resize = [] if image_size == native_size else [v2.Resize(image_size, antialias=True)]
    resize += [v2.CenterCrop(image_size)]
    normalize = [v2.Normalize(mean, std)]
    return v2.Compose(to_float + augment + normalize), v2.Compose(to_float + resize + normalize)


def build_datasets(config: argparse.Namespace) -> tuple[Dataset, Dataset, DataSpec]:
    image_size = config.image_size or NATIVE_IMAGE_SIZE[config.dataset]
    builders = {
        "digits": digits_datasets,
        "image_folder": image_folder_datasets,
        "cifar10": cifar10_datasets,
        "fake": fake_datasets,
    }
    return builders[config.dataset](config, image_size)


def digits_datasets(config: argparse.Namespace, image_size: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    train_tf, eval_tf = image_transforms(image_size, NATIVE_IMAGE_SIZE["digits"], (0.5,), (0.5,))
    train_idx, val_idx = split_indices(len(labels), config.val_fraction, config.seed)
    train = TensorImageDataset(images[train_idx], labels[train_idx], train_tf)
    val = TensorImageDataset(images[val_idx], labels[val_idx], eval_tf)
    spec = DataSpec(tuple(str(name) for name in digits.target_names), 1, image_size)
    return train, val, spec


def fake_datasets(config: argparse.Namespace, image_size: int):
    train_tf, eval_tf = image_transforms(image_size, image_size, IMAGENET_MEAN, IMAGENET_STD)
    shape = (3, image_size, image_size)
    val_size = max(1, round(config.fake_samples * config.val_fraction))
    common = {"image_size": shape, "num_classes": config.fake_classes}
    train = datasets.FakeData(config.fake_samples - val_size, transform=train_tf, **common)
    val = datasets.FakeData(
        val_size, transform=eval_tf, random_offset=config.fake_samples, **common
    )
    spec = DataSpec(tuple(str(i) for i in range(config.fake_classes)), 3, image_size)
    return train, val, spec


def cifar10_datasets(config: argparse.Namespace, image_size: int):
    train_tf, eval_tf = image_transforms(
        image_size, NATIVE_IMAGE_SIZE["cifar10"], (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    )
    try:
        train = datasets.CIFAR10(config.data_dir, True, train_tf, download=config.download)
        val = datasets.CIFAR10(config.data_dir, False, eval_tf, download=config.download)
    except RuntimeError as error:
        raise UserError(
            f"CIFAR-10 not found or corrupted under {config.data_dir} ({error}): "
            "pass --download (needs network) or point --data-dir at an extracted copy"
        ) from None
    return train, val, DataSpec(tuple(train.classes), 3, image_size)


def image_folder_datasets(config: argparse.Namespace, image_size: int):
    root = Path(config.data_dir)
    train_tf, eval_tf = image_transforms(image_size, image_size, IMAGENET_MEAN, IMAGENET_STD)
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = class_folders(root / "train")
        train_samples = image_samples(root / "train", classes)
        val_samples = image_samples(root / "val", classes)
    else:
        classes = class_folders(root)
        samples = image_samples(root, classes)
        train_idx, val_idx = split_indices(len(samples), config.val_fraction, config.seed)
        train_samples = [samples[i] for i in train_idx]
        val_samples = [samples[i] for i in val_idx]
    unreadable = unreadable_images(train_samples + val_samples, config.skip_bad_images)
    train_samples = [sample for sample in train_samples if sample[0] not in unreadable]
    val_samples = [sample for sample in val_samples if sample[0] not in unreadable]
    train = ImageFileDataset(train_samples, train_tf)
    val = ImageFileDataset(val_samples, eval_tf)
    return train, val, DataSpec(tuple(classes), 3, image_size)


def class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist: check --data-dir")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise UserError(
            f"data folder {root} has no class folders: expected {root}/<class>/<image files>"
        )
    if len(classes) < 2:
        raise UserError(
            f"data folder {root} has only one class ({classes[0]}): a classifier needs two or more"
        )
    return classes


def image_samples(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """Every image file under root/<class>/, non-image files ignored."""
    samples = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise UserError(f"class folder {folder} is missing: every split needs every class")
        files = sorted(
            path
            for path in folder.rglob("*")
            if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS
        )
        if not files:
            raise UserError(
                f"class folder {folder} has no images ({', '.join(IMG_EXTENSIONS)}): "
                "add images or remove the folder"
            )
        samples += [(path, label) for path in files]
    return samples


def is_readable_image(path: Path) -> bool:
    """A quick header and structure check, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # PIL raises many types for broken files; all mean "unreadable"
        return False
    return True


def unreadable_images(samples: list[tuple[Path, int]], skip_bad: bool) -> set[Path]:
    """Check every file before training starts; refuse, or report how many are skipped."""
    bad = [path for path, _ in samples if not is_readable_image(path)]
    if bad and not skip_bad:
        listed = ", ".join(str(path) for path in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise UserError(
            f"{len(bad)} unreadable image(s): {listed}; fix them or pass --skip-bad-images"
        )
    if bad:
        print(f"skipped {len(bad)} unreadable image(s)")
    return set(bad)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from the torch seed the DataLoader gave it."""
    import random

    import numpy as np

    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_loaders(
    train: Dataset,
    val: Dataset,
    spec: DataSpec,
    config: argparse.Namespace,
    rank: int,
    world_size: int,
    pin_memory: bool,
) -> tuple[DataLoader, DataLoader]:
    """Loaders whose shuffling depends only on (seed, epoch): call set_epoch every epoch."""
    per_rank_train = len(train) // world_size
    if config.batch_size > per_rank_train:
        raise UserError(
            f"--batch-size {config.batch_size} is larger than the training set "
            f"({per_rank_train} samples per process): lower --batch-size"
        )
    workers = {
        "num_workers": config.num_workers,
        "pin_memory": pin_memory,
        "persistent_workers": config.num_workers > 0,
        "worker_init_fn": seed_worker,
        "generator": torch.Generator().manual_seed(config.seed + rank),
    }
    train_loader = DataLoader(
        train,
        batch_size=config.batch_size,
        sampler=DistributedSampler(train, world_size, rank, shuffle=True, seed=config.seed),
        collate_fn=BatchCollator(spec.num_classes, config.mixup_alpha, config.cutmix_alpha),
        drop_last=True,
        **workers,
    )
    val_loader = DataLoader(
        val,
        batch_size=config.batch_size,
        sampler=ShardSampler(len(val), rank, world_size),
        **workers,
    )
    return train_loader, val_loader
