import pickle

import numpy as np
import pytest
import torch

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.config.schema import DataConfig
from {{ cookiecutter.project_slug }}.data.image_datasets import split_indices
from {{ cookiecutter.project_slug }}.data.loaders import Placement, build_loaders
from {{ cookiecutter.project_slug }}.data.sampling import SeededAugmentation, SeededShuffle
from {{ cookiecutter.project_slug }}.datasets import build_datasets
from {{ cookiecutter.project_slug }}.errors import UserError
from {{ cookiecutter.project_slug }}.tasks.image_classification.task import BatchCollator


def config_for(*flags: str) -> DataConfig:
    return parse_config(["--image-size", "16", *flags]).data


def test_digits_split_is_deterministic_and_disjoint():
    splits, spec = build_datasets(config_for("--dataset", "digits", "--image-size", "8"))
    assert (len(splits["train"]), len(splits["val"])) == (1438, 359)
    assert (spec.num_classes, spec.in_channels) == (10, 1)
    image, label = splits["train"][0]
    assert image.shape == (1, 8, 8) and 0 <= label < 10
    first, second = split_indices(100, 0.2, seed=1), split_indices(100, 0.2, seed=1)
    assert first == second and not set(first[0]) & set(first[1])


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
    splits, spec = build_datasets(
        config_for("--dataset", "cifar10", "--data-dir", str(tmp_path), "--image-size", "32")
    )
    assert (len(splits["train"]), len(splits["val"]), spec.class_names[0]) == (20, 6, "airplane")
    assert splits["train"][0][0].shape == (3, 32, 32)


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="--download"):
        build_datasets(config_for("--dataset", "cifar10", "--data-dir", str(tmp_path)))


@pytest.mark.parametrize("samples, batches", [(113, [64, 26]), (81, [64])])
def test_last_partial_batch_is_kept_unless_it_is_one_sample(samples, batches):
    config = config_for("--dataset", "fake", "--fake-samples", str(samples), "--batch-size", "64")
    splits, spec = build_datasets(config)  # 20 % of the samples are held out for validation
    collate = BatchCollator(spec.num_classes, 0.0, 0.0)
    placement = Placement(rank=0, world_size=1, pin_memory=False, decodes_files=False)
    train_loader, _ = build_loaders(
        splits["train"], splits["val"], spec, config, (collate, None), placement
    )
    assert [len(labels) for _, labels in train_loader] == batches


def test_collate_mixes_batches_into_soft_labels():
    samples = [(torch.rand(3, 8, 8), label % 4, 100 + label) for label in range(6)]
    images, labels = BatchCollator(4, mixup_alpha=0.4, cutmix_alpha=0.0)(samples)
    assert images.shape == (6, 3, 8, 8) and labels.shape == (6, 4)
    assert torch.allclose(labels.sum(dim=1), torch.ones(6))
    again, _ = BatchCollator(4, mixup_alpha=0.4, cutmix_alpha=0.0)(samples)
    assert torch.equal(images, again)  # the mix is drawn from the samples' seeds
    images, labels = BatchCollator(4, 0.0, 0.0)(samples)
    assert labels.tolist() == [0, 1, 2, 3, 0, 1]


def test_augmentation_depends_only_on_the_sample_seed():
    splits, _ = build_datasets(config_for("--dataset", "fake", "--fake-samples", "20"))
    seeded = SeededAugmentation(splits["train"])
    torch.manual_seed(1)
    first, label, _ = seeded[(3, 77)]
    state = torch.get_rng_state()
    torch.manual_seed(2)
    again, _, _ = seeded[(3, 77)]
    other, _, _ = seeded[(3, 78)]
    torch.manual_seed(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is left alone


def test_every_epoch_gets_new_sample_seeds_on_every_rank():
    dataset = list(range(10))
    samplers = [SeededShuffle(dataset, rank, 2, seed=0) for rank in range(2)]
    keys = {}
    for epoch in (0, 1):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        keys[epoch] = [key for sampler in samplers for key in sampler]
        assert sorted(index for index, _ in keys[epoch]) == list(range(10))
    assert not {seed for _, seed in keys[0]} & {seed for _, seed in keys[1]}
