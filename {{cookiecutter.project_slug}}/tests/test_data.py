import argparse
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.project_slug }}.config import parse_config
from {{ cookiecutter.project_slug }}.data import BatchCollator, build_datasets, split_indices
from {{ cookiecutter.project_slug }}.errors import UserError


def write_images(folder, count: int, mode: str = "RGB", size=(12, 10)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new(mode, size, color=index * 20 % 255).save(folder / f"{index}.png")


def config_for(*flags: str) -> argparse.Namespace:
    return parse_config(["--image-size", "16", *flags])


def test_digits_split_is_deterministic_and_disjoint():
    train, val, spec = build_datasets(config_for("--dataset", "digits", "--image-size", "8"))
    assert (len(train), len(val), spec.num_classes, spec.in_channels) == (1438, 359, 10, 1)
    image, label = train[0]
    assert image.shape == (1, 8, 8) and 0 <= label < 10
    first, second = split_indices(100, 0.2, seed=1), split_indices(100, 0.2, seed=1)
    assert first == second and not set(first[0]) & set(first[1])


def test_image_folder_with_class_folders_split_by_seed(tmp_path):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 5)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored
    train, val, spec = build_datasets(
        config_for("--dataset", "image_folder", "--data-dir", str(tmp_path))
    )
    assert spec.class_names == ("cat", "dog") and len(train) + len(val) == 10
    assert train[0][0].shape == (3, 16, 16)


def test_image_folder_converts_modes_and_sizes(tmp_path):
    for split in ("train", "val"):
        write_images(tmp_path / split / "a", 2, mode="L", size=(30, 20))
        write_images(tmp_path / split / "b", 2, mode="RGBA", size=(9, 40))
        write_images(tmp_path / split / "b", 1, mode="P", size=(16, 16))
    train, val, _ = build_datasets(
        config_for("--dataset", "image_folder", "--data-dir", str(tmp_path))
    )
    assert {tuple(train[i][0].shape) for i in range(len(train))} == {(3, 16, 16)}
    assert len(val) == 4


def test_corrupt_images_are_reported_or_skipped(tmp_path):
    for name in ("a", "b"):
        write_images(tmp_path / name, 4)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "b" / "empty.jpg").write_bytes(b"")
    flags = ("--dataset", "image_folder", "--data-dir", str(tmp_path))
    with pytest.raises(UserError, match="2 unreadable image") as raised:
        build_datasets(config_for(*flags))
    assert "broken.png" in str(raised.value) and "empty.jpg" in str(raised.value)
    train, val, _ = build_datasets(config_for(*flags, "--skip-bad-images"))
    assert len(train) + len(val) == 8


def write_cifar_batch(path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = {
        "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        "labels": rng.integers(0, 10, count).tolist(),
    }
    path.write_bytes(pickle.dumps(batch))


def test_cifar10_reads_a_local_copy(tmp_path, monkeypatch):
    from torchvision.datasets import cifar

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for index in range(1, 6):
        write_cifar_batch(root / f"data_batch_{index}", 4, index)
    write_cifar_batch(root / "test_batch", 6, 0)
    classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
    # The md5 sums of this hand-made copy cannot match the real archive's.
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)
    train, val, spec = build_datasets(
        config_for("--dataset", "cifar10", "--data-dir", str(tmp_path), "--image-size", "32")
    )
    assert (len(train), len(val), spec.class_names[0]) == (20, 6, "airplane")
    assert train[0][0].shape == (3, 32, 32)


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="--download"):
        build_datasets(config_for("--dataset", "cifar10", "--data-dir", str(tmp_path)))


def test_collate_mixes_batches_into_soft_labels():
    samples = [(torch.rand(3, 8, 8), label % 4) for label in range(6)]
    images, labels = BatchCollator(4, mixup_alpha=0.4, cutmix_alpha=0.0)(samples)
    assert images.shape == (6, 3, 8, 8) and labels.shape == (6, 4)
    assert torch.allclose(labels.sum(dim=1), torch.ones(6))
    images, labels = BatchCollator(4, 0.0, 0.0)(samples)
    assert labels.tolist() == [0, 1, 2, 3, 0, 1]
