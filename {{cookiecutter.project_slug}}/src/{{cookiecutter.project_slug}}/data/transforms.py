"""torchvision transforms v2: each dataset's train (augmented) and evaluation pipelines."""

import torch
from torchvision.transforms import v2

from .spec import DataSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
