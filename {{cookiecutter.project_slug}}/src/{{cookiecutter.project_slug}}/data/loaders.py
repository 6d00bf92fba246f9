"""Datasets, transforms, batch collation and DataLoaders."""

import functools
import itertools
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    default_collate,
    get_worker_info,
)
from torchvision import datasets, tv_tensors
from torchvision.transforms import v2

from ..config.schema import DataConfig
from ..errors import UserError
from ..runs.preemption import ignore_stop_signals
from .image_files import load_rgb
from .image_folder import (
    available_cores,
    carves_validation,
    folder_class_names,
    read_image_folder,
    split_record,
)

NATIVE_IMAGE_SIZE = {"digits": 8, "cifar10": 32, "fake": 32}
KNOWN_CLASS_COUNTS = {"digits": 10, "cifar10": 10}
# Photos are resized to this by default: enough detail to tell textures and scenes apart, small
# enough to train from scratch on a CPU. Pretrained ImageNet weights want 224.
DEFAULT_PHOTO_SIZE = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATION = {
    "digits": ((0.5,), (0.5,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    "fake": (IMAGENET_MEAN, IMAGENET_STD),
    "image_folder": (IMAGENET_MEAN, IMAGENET_STD),
}
# MixUp and CutMix draw from a seed of their own, derived from the batch's sample seeds.
MIX_SALT = 0x4D49
# Balanced sampling draws each epoch's samples from a seed of its own, derived from (seed, epoch).
BALANCE_SALT = 0x4241
log = logging.getLogger("train.data")


@dataclass(frozen=True)
class DataSpec:
    """What the model, the checkpoint and an exported file need to know about the data."""

    class_names: tuple[str, ...]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: int  # evaluation resizes the shorter side to this, then centre-crops

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {
            "class_names": list(self.class_names),
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_size": self.resize_size,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls(
            tuple(values["class_names"]),
            values["in_channels"],
            values["image_size"],
            tuple(values["mean"]),
            tuple(values["std"]),
            values["resize_size"],
        )


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
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if not self.skip_bad_images:
            raise UserError(
                f"image {path} became unreadable after the check ({reason}): restore it, "
                "or pass --skip-bad-images"
            )
        log.warning("skipped image %s: unreadable since the check (%s)", path, reason)


class SeededAugmentation(Dataset):
    """Draws each sample's random augmentation from the seed its sampler key carries.

    Augmentation then depends only on (seed, epoch, sample), not on which worker process
    loads the sample or how long it has run: a resumed run sees the same images.
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


class BatchCollator:
    """Stacks seeded samples into a batch and, when enabled, applies MixUp or CutMix to it.

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
        images, labels, seeds = default_collate(samples)
        if self.mix is None:
            return images, labels
        with seeded_cpu_rng(derived_seed(MIX_SALT, *seeds.tolist())):
            return self.mix(images, labels)


def split_indices(size: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic train/val split that depends only on the seed."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    val_size = max(1, round(size * val_fraction))
    return sorted(order[val_size:]), sorted(order[:val_size])


def tensor_transforms(image_size: int, native_size: int, mean, std) -> tuple[v2.Compose, ...]:
    """Train (augmented) and eval transforms for the small built-in datasets."""
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


def photo_transforms(image_size: int, resize_size: int, mean, std) -> tuple[v2.Compose, ...]:
    """Train and eval transforms for photos of any size that see objects at the same scale.

    Eval resizes the shorter side to `resize_size` (image_size / crop_ratio) and centre-crops
    image_size: the crop spans crop_ratio (0.875) of the shorter side. Train crops 50-100 % of
    the area: on average a side of 0.86 of the image's, the same scale.
    """
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train = [
        v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    evaluation = [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(train + to_float), v2.Compose(evaluation + to_float)


def image_file_transform(spec: DataSpec) -> v2.Compose:
    """Evaluation's transform of a photo, for an image file of any size given to any model
    (predict): single-channel models (digits) see the picture in grey."""
    _, evaluation = photo_transforms(spec.image_size, spec.resize_size, spec.mean, spec.std)
    if spec.in_channels == 1:
        return v2.Compose([v2.Grayscale(), evaluation])
    return evaluation


def decode_min_side(spec: DataSpec) -> int:
    """How small a large JPEG may be decoded (load_rgb's min_side): twice the evaluation size,
    so even the smallest training crop is never upsampled."""
    return 2 * spec.resize_size


def build_datasets(
    config: DataConfig, augment: bool = True, recorded_split: dict | None = None
) -> tuple[dict[str, Dataset], DataSpec]:
    """The "train", "val" (and "test") datasets and the spec.

    augment=False gives the train split the eval transforms (for scoring every image).
    `recorded_split`: a run's run_split_record, which an image folder's carved split reuses.
    """
    builders = {
        "digits": digits_datasets,
        "image_folder": functools.partial(image_folder_datasets, recorded_split=recorded_split),
        "cifar10": cifar10_datasets,
        "fake": fake_datasets,
    }
    return builders[config.dataset](config, augment)


def class_count_of(config: DataConfig) -> int:
    """How many classes the data has, known without reading an image."""
    if config.dataset == "fake":
        return config.fake_classes
    if config.dataset == "image_folder":
        return len(folder_class_names(Path(config.data_dir)))
    return KNOWN_CLASS_COUNTS[config.dataset]


def image_size_of(config: DataConfig) -> int:
    return config.image_size or NATIVE_IMAGE_SIZE.get(config.dataset, DEFAULT_PHOTO_SIZE)


def small_image_spec(config: DataConfig, class_names, in_channels: int) -> DataSpec:
    mean, std = NORMALIZATION[config.dataset]
    image_size = image_size_of(config)
    return DataSpec(tuple(class_names), in_channels, image_size, mean, std, image_size)


def transforms_for(config: DataConfig, spec: DataSpec, augment: bool) -> tuple:
    if config.dataset == "image_folder":
        pair = photo_transforms(spec.image_size, spec.resize_size, spec.mean, spec.std)
    else:
        native = NATIVE_IMAGE_SIZE[config.dataset]
        pair = tensor_transforms(spec.image_size, native, spec.mean, spec.std)
    train_tf, eval_tf = pair
    return (train_tf if augment else eval_tf), eval_tf


def digits_datasets(config: DataConfig, augment: bool):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    spec = small_image_spec(config, [str(name) for name in digits.target_names], 1)
    train_tf, eval_tf = transforms_for(config, spec, augment)
    train_idx, val_idx = split_indices(len(labels), config.val_fraction, config.seed)
    splits = {
        "train": TensorImageDataset(images[train_idx], labels[train_idx], train_tf),
        "val": TensorImageDataset(images[val_idx], labels[val_idx], eval_tf),
    }
    return splits, spec


def fake_datasets(config: DataConfig, augment: bool):
    spec = small_image_spec(config, [str(i) for i in range(config.fake_classes)], 3)
    train_tf, eval_tf = transforms_for(config, spec, augment)
    shape = (3, spec.image_size, spec.image_size)
    val_size = max(1, round(config.fake_samples * config.val_fraction))
    common = {"image_size": shape, "num_classes": config.fake_classes}
    train = datasets.FakeData(config.fake_samples - val_size, transform=train_tf, **common)
    val = datasets.FakeData(
        val_size, transform=eval_tf, random_offset=config.fake_samples, **common
    )
    return {"train": train, "val": val}, spec


def cifar10_datasets(config: DataConfig, augment: bool):
    # The class names are known once the files are read; the transforms need only the sizes.
    spec = small_image_spec(config, (), 3)
    train_tf, eval_tf = transforms_for(config, spec, augment)
    try:
        train = datasets.CIFAR10(config.data_dir, True, train_tf, download=config.download)
        val = datasets.CIFAR10(config.data_dir, False, eval_tf, download=config.download)
    except RuntimeError as error:
        raise UserError(
            f"CIFAR-10 not found or corrupted under {config.data_dir} ({error}): "
            "pass --download (needs network) or point --data-dir at an extracted copy"
        ) from None
    except OSError as error:  # URLError included: no network, proxy or DNS failure
        reason = getattr(error, "reason", None) or error
        raise UserError(
            f"could not download CIFAR-10 into {config.data_dir} ({reason}): check the network, "
            "or fetch cifar-10-python.tar.gz elsewhere and extract it into --data-dir"
        ) from None
    # CIFAR-10's official test batch serves as the validation split.
    return {"train": train, "val": val}, replace(spec, class_names=tuple(train.classes))


def image_folder_datasets(config: DataConfig, augment: bool, recorded_split: dict | None):
    folder = read_image_folder(
        Path(config.data_dir),
        config.val_fraction,
        config.seed,
        config.skip_bad_images,
        recorded_split,
    )
    mean, std = NORMALIZATION["image_folder"]
    image_size = image_size_of(config)
    resize_size = round(image_size / config.crop_ratio)
    spec = DataSpec(folder.classes, 3, image_size, mean, std, resize_size)
    train_tf, eval_tf = transforms_for(config, spec, augment)
    min_side = decode_min_side(spec)
    splits = {
        split: ImageFileDataset(
            samples, train_tf if split == "train" else eval_tf, config.skip_bad_images, min_side
        )
        for split, samples in folder.splits.items()
    }
    return splits, spec


def run_split_record(
    config: DataConfig, splits: dict[str, Dataset], spec: DataSpec, recorded: dict | None
) -> dict | None:
    """The split a run records (in its checkpoints and split.json) so that resume and evaluate
    see the same one whatever files come and go: the recorded split it reused, or the one just
    carved out of an image folder. None where folders or the seed alone fix the split."""
    if config.dataset != "image_folder" or not carves_validation(Path(config.data_dir)):
        return None
    if recorded is not None:
        return recorded
    samples = {split: splits[split].samples for split in ("train", "val")}
    return split_record(Path(config.data_dir), spec.class_names, samples)


def training_labels(dataset: Dataset) -> torch.Tensor:
    """Every sample's label, read without decoding an image."""
    if isinstance(dataset, TensorImageDataset):
        return dataset.labels.long()
    if isinstance(dataset, ImageFileDataset):
        return torch.tensor([label for _, label in dataset.samples])
    if isinstance(dataset, datasets.FakeData):
        return fake_labels(dataset)
    if hasattr(dataset, "targets"):  # CIFAR10, and torchvision's other labelled datasets
        return torch.as_tensor(dataset.targets).long()
    # A dataset added later that keeps its labels nowhere: read (and decode) every sample.
    return torch.tensor([dataset[index][1] for index in range(len(dataset))])


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


def loss_class_weights(choice: str, dataset: Dataset, class_names) -> torch.Tensor | None:
    """--class-weights: None, or N / (C * count) per class, which averages 1 over the samples."""
    if choice == "none":
        return None
    counts = torch.bincount(training_labels(dataset), minlength=len(class_names))
    for name, count in zip(class_names, counts.tolist(), strict=True):
        if count == 0:
            raise UserError(
                f"class {name} has no training samples, so --class-weights auto cannot weigh "
                "it: add training images of it, or train with --class-weights none"
            )
    weights = counts.sum() / (len(class_names) * counts.double())
    shown = [f"{weight:.3g}" for weight in weights.tolist()]
    log.info("class weights (inverse frequency): %s", per_class(class_names, shown))
    return weights.float()


def per_class(class_names, values: list) -> str:
    return ", ".join(f"{name}: {value}" for name, value in zip(class_names, values, strict=True))


def all_images(splits: dict[str, Dataset]) -> Dataset:
    return ConcatDataset([splits[name] for name in sorted(splits)])


def default_num_workers(dataset: str, local_world_size: int) -> int:
    """Workers decode images in parallel; the in-memory datasets gain nothing from them."""
    if dataset != "image_folder":
        return 0
    return max(1, min(8, available_cores() // max(1, local_world_size)))


def build_loaders(
    train: Dataset,
    val: Dataset,
    spec: DataSpec,
    config: DataConfig,
    rank: int,
    world_size: int,
    pin_memory: bool,
) -> tuple[DataLoader, DataLoader]:
    """Loaders whose shuffling and augmentation depend only on (seed, epoch, sample).

    The last, partial batch is kept unless it holds a single sample, which BatchNorm cannot
    normalise: small folders train on every image.
    """
    sampler = training_sampler(train, spec, config, rank, world_size)
    if config.batch_size > len(sampler):
        raise UserError(
            f"--batch-size {config.batch_size} is larger than the training set "
            f"({len(sampler)} samples per process): lower --batch-size"
        )
    num_workers = config.num_workers
    if num_workers is None:
        num_workers = default_num_workers(config.dataset, local_world_size(world_size))
    workers = {
        "num_workers": num_workers,
        "pin_memory": pin_memory,
        "persistent_workers": num_workers > 0,
        # Worker seeds do not shape the data (samples carry their own); a private generator
        # keeps the draws that pick them from moving the training process's RNG.
        "generator": torch.Generator().manual_seed(config.seed + rank),
        "worker_init_fn": ignore_stop_signals,
    }
    train_loader = DataLoader(
        SeededAugmentation(train),
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=BatchCollator(spec.num_classes, config.mixup_alpha, config.cutmix_alpha),
        drop_last=len(sampler) % config.batch_size == 1,
        **workers,
    )
    val_loader = DataLoader(
        val,
        batch_size=config.batch_size,
        sampler=ShardSampler(len(val), rank, world_size),
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
