"""torchvision's FakeData: random images of --fake-classes classes, for smoke tests and
benchmarks (--fake-samples in all, --val-fraction of them for validation)."""

from ..data.image_datasets import FakeImages, image_size
from ..data.spec import DataSpec
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, tensor_transforms
from . import DatasetInfo, register

NATIVE_SIZE = 32


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    size = image_size(config, NATIVE_SIZE, trained_spec)
    spec = DataSpec(tuple(class_names(config)), 3, size, IMAGENET_MEAN, IMAGENET_STD, size)
    augmenting, eval_tf = tensor_transforms(size, NATIVE_SIZE, IMAGENET_MEAN, IMAGENET_STD)
    train_tf = augmenting if augment else eval_tf
    val_size = max(1, round(config.fake_samples * config.val_fraction))
    common = {"image_size": (3, size, size), "num_classes": config.fake_classes}
    train = FakeImages(config.fake_samples - val_size, transform=train_tf, **common)
    val = FakeImages(val_size, transform=eval_tf, random_offset=config.fake_samples, **common)
    return {"train": train, "val": val}, spec


def class_names(config) -> list[str]:
    return [str(index) for index in range(config.fake_classes)]


register(
    DatasetInfo(
        "fake",
        task="image_classification",
        build=build,
        class_names=class_names,
    )
)
