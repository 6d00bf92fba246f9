"""Photos in class folders under --data-dir: root/train/<class>/* with val/ (or valid/,
validation/, dev/, eval/) and/or test/, or root/<class>/* with validation carved per class by
--val-fraction and --seed and recorded in the run (data/class_folders.py reads the layouts)."""

from pathlib import Path

from ..data.class_folders import (
    carves_validation,
    folder_class_names,
    has_split_folders,
    read_image_folder,
    split_manifest,
)
from ..data.image_datasets import ImageFileDataset, image_size
from ..data.spec import DataSpec
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, decode_min_side, photo_transforms
from . import DatasetInfo, register

# Photos are resized to this by default: enough detail to tell textures and scenes apart, small
# enough to train from scratch on a CPU. Pretrained ImageNet weights want 224.
DEFAULT_PHOTO_SIZE = 64


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    size = image_size(config, DEFAULT_PHOTO_SIZE, trained_spec)
    folder = read_image_folder(
        Path(config.data_dir),
        config.val_fraction,
        config.seed,
        config.skip_bad_images,
        recorded_split,
    )
    resize_size = round(size / config.crop_ratio)
    spec = DataSpec(folder.classes, 3, size, IMAGENET_MEAN, IMAGENET_STD, resize_size)
    augmenting, eval_tf = photo_transforms(size, resize_size, IMAGENET_MEAN, IMAGENET_STD)
    train_tf = augmenting if augment else eval_tf
    min_side = decode_min_side(spec)
    splits = {
        split: ImageFileDataset(
            samples, train_tf if split == "train" else eval_tf, config.skip_bad_images, min_side
        )
        for split, samples in folder.splits.items()
    }
    return splits, spec


def split_record(config, splits, spec: DataSpec, recorded: dict | None) -> dict | None:
    """The split a run records (in its checkpoints and split.json) so that resume and evaluate
    see the same one whatever files come and go: the recorded split it reused, or the one just
    carved. None where split folders fix the split."""
    if not carves_validation(Path(config.data_dir)):
        return None
    if recorded is not None:
        return recorded
    samples = {split: splits[split].samples for split in ("train", "val")}
    return split_manifest(Path(config.data_dir), spec.class_names, samples)


def class_names(config) -> list[str]:
    return folder_class_names(Path(config.data_dir))


register(
    DatasetInfo(
        "image_folder",
        task="image_classification",
        build=build,
        class_names=class_names,
        needs_data_dir=True,
        decodes_files=True,
        split_record=split_record,
        scored_whole=lambda data_dir: not has_split_folders(data_dir),
    )
)
