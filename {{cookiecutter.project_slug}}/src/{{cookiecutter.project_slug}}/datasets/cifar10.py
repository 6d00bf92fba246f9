"""CIFAR-10: 60,000 32x32 photos of 10 classes, from --data-dir (--download fetches it);
its official test batch serves as the validation split."""

from torchvision import datasets

from ..data.image_datasets import image_size
from ..data.spec import DataSpec
from ..data.transforms import tensor_transforms
from ..errors import UserError
from . import DatasetInfo, register

NATIVE_SIZE = 32
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
CLASSES += ("dog", "frog", "horse", "ship", "truck")


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    size = image_size(config, NATIVE_SIZE, trained_spec)
    augmenting, eval_tf = tensor_transforms(size, NATIVE_SIZE, MEAN, STD)
    train_tf = augmenting if augment else eval_tf
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
    spec = DataSpec(tuple(train.classes), 3, size, MEAN, STD, size)
    return {"train": train, "val": val}, spec


def class_names(config) -> list[str]:
    return list(CLASSES)


register(
    DatasetInfo(
        "cifar10",
        task="image_classification",
        build=build,
        class_names=class_names,
        needs_data_dir=True,
    )
)
