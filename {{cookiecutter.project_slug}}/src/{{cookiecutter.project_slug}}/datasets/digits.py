"""scikit-learn's handwritten digits: 1,797 8x8 grey images of 10 classes, shipped inside
scikit-learn (no download); validation carved by --val-fraction and --seed."""

import torch
from sklearn.datasets import load_digits

from ..data.image_datasets import TensorImageDataset, image_size, split_indices
from ..data.spec import DataSpec
from ..data.transforms import tensor_transforms
from . import DatasetInfo, register

NATIVE_SIZE = 8
MEAN, STD = (0.5,), (0.5,)


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    size = image_size(config, NATIVE_SIZE, trained_spec)
    spec = DataSpec(tuple(str(name) for name in digits.target_names), 1, size, MEAN, STD, size)
    augmenting, eval_tf = tensor_transforms(size, NATIVE_SIZE, MEAN, STD)
    train_tf = augmenting if augment else eval_tf
    train_idx, val_idx = split_indices(len(labels), config.val_fraction, config.seed)
    splits = {
        "train": TensorImageDataset(images[train_idx], labels[train_idx], train_tf),
        "val": TensorImageDataset(images[val_idx], labels[val_idx], eval_tf),
    }
    return splits, spec


def class_names(config) -> list[str]:
    return [str(digit) for digit in range(10)]


register(
    DatasetInfo(
        "digits",
        task="image_classification",
        build=build,
        class_names=class_names,
    )
)
