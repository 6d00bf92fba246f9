"""--balanced-sampling and --class-weights auto: the draw, the weights, and what they buy."""

import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.image_datasets import TensorImageDataset
from {{ cookiecutter.project_slug }}.data.labels import loss_class_weights, training_labels
from {{ cookiecutter.project_slug }}.data.sampling import ClassBalancedSampler
from {{ cookiecutter.project_slug }}.datasets import build_datasets
from {{ cookiecutter.project_slug }}.errors import UserError
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
from {{ cookiecutter.project_slug }}.train import main as train_main

from conftest import QUICK, load_weights, read_metrics

SKEWED = torch.tensor([0] * 2400 + [1] * 450 + [2] * 150)  # 80 / 15 / 5 %


@pytest.fixture(autouse=True)
def private_check_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def drawn(sampler: ClassBalancedSampler, epoch: int, start: int = 0) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch, start)
    return list(sampler)


def assert_near_uniform(labels: torch.Tensor, num_classes: int) -> None:
    """Each class drawn 1/C of the time, within 4 binomial standard deviations."""
    draws, share = len(labels), 1 / num_classes
    tolerance = 4 * math.sqrt(draws * share * (1 - share))
    counts = torch.bincount(labels, minlength=num_classes)
    assert (counts - draws * share).abs().max() < tolerance, counts


def test_every_class_is_drawn_equally_often_over_epochs():
    sampler = ClassBalancedSampler(SKEWED, rank=0, world_size=1, seed=0)
    keys = [key for epoch in range(4) for key in drawn(sampler, epoch)]
    indices = torch.tensor([index for index, _ in keys])
    assert len(sampler) == len(SKEWED) and len(keys) == 4 * len(SKEWED)
    assert_near_uniform(SKEWED[indices], 3)
    assert set(indices.tolist()) >= set(range(2850, 3000))  # every rare sample gets its turn


def test_ranks_share_one_draw_disjointly():
    samplers = [ClassBalancedSampler(SKEWED[:2999], rank, 2, seed=5) for rank in (0, 1)]
    first, second = (drawn(sampler, epoch=2) for sampler in samplers)
    assert torch.equal(samplers[0].epoch_draw(), samplers[1].epoch_draw())  # same on every rank
    draw = samplers[0].epoch_draw().tolist()
    assert len(draw) == 3000  # 2999 padded to a multiple of the world size
    assert [index for index, _ in first] == draw[0::2]
    assert [index for index, _ in second] == draw[1::2]
    assert len(first) == len(second) == len(samplers[0]) == 1500
    assert not {seed for _, seed in first} & {seed for _, seed in second}
    for share in (first, second):
        assert_near_uniform(SKEWED[[index for index, _ in share]], 3)


def test_a_repeated_sample_gets_a_new_augmentation_seed_each_time():
    keys = drawn(ClassBalancedSampler(SKEWED, 0, 1, seed=0), epoch=0)
    assert len({index for index, _ in keys}) < len(keys)
    assert len({seed for _, seed in keys}) == len(keys)


def test_resuming_mid_epoch_continues_the_same_sequence():
    sampler = ClassBalancedSampler(SKEWED, rank=1, world_size=2, seed=3)
    whole = drawn(sampler, epoch=4)
    resumed = ClassBalancedSampler(SKEWED, rank=1, world_size=2, seed=3)
    assert drawn(resumed, epoch=4, start=700) == whole[700:]
    assert drawn(sampler, epoch=5) != whole


def write_pngs(folder, count: int, grey_mean: float, rng: np.random.Generator) -> None:
    """Flat grey 8x8 images whose brightness is drawn around `grey_mean`."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        grey = int(np.clip(rng.normal(grey_mean, 0.1), 0, 1) * 255)
        Image.new("RGB", (8, 8), (grey, grey, grey)).save(folder / f"{index}.png")


@pytest.mark.parametrize(
    "flags",
    [
        ["--dataset", "digits", "--image-size", "8"],
        ["--dataset", "fake", "--fake-samples", "60", "--image-size", "8"],
        ["--dataset", "image_folder", "--image-size", "8"],
    ],
)
def test_labels_match_the_samples_and_are_read_without_opening_an_image(tmp_path, flags):
    rng = np.random.default_rng(0)
    for name, count in (("ant", 7), ("bee", 2), ("cow", 4)):
        write_pngs(tmp_path / "data" / name, count, 0.5, rng)
    config = parse_config([*flags, "--data-dir", str(tmp_path / "data")])
    train = build_datasets(config.data)[0]["train"]
    expected = [train[index][1] for index in range(len(train))]
    shutil.rmtree(tmp_path / "data")
    assert training_labels(train).tolist() == expected


def skewed_dataset(labels: list[int]) -> TensorImageDataset:
    return TensorImageDataset(torch.zeros(len(labels), 1, 8, 8), torch.tensor(labels), None)


def test_class_weights_are_inverse_frequencies_that_average_one():
    labels = [0] * 90 + [1] * 10
    weights = loss_class_weights("auto", skewed_dataset(labels), ("common", "rare"))
    assert torch.allclose(weights, torch.tensor([100 / 180, 100 / 20]))
    assert math.isclose(float(weights[labels].mean()), 1.0, rel_tol=1e-6)
    assert loss_class_weights("none", skewed_dataset(labels), ("common", "rare")) is None


def test_a_class_without_training_samples_cannot_be_weighed():
    with pytest.raises(UserError, match="class dog has no training samples"):
        loss_class_weights("auto", skewed_dataset([0, 0, 2]), ("cat", "dog", "emu"))


def fails_with_one_line(capsys, flags: list[str]) -> str:
    try:
        assert train_main(flags) == 2
    except SystemExit as stopped:  # flag mistakes stop in the parser
        assert stopped.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    return errors[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--class-weights", "foo"], "--class-weights: invalid choice: 'foo'"),
        (["--balanced-sampling", "--class-weights", "auto"], "pick one"),
        # 8 training samples cannot cover 10 classes.
        (["--fake-samples", "10", "--batch-size", "4", "--class-weights", "auto"], "no training"),
    ],
)
def test_bad_values_stop_with_one_line(tmp_path, capsys, flags, message):
    error = fails_with_one_line(capsys, [*QUICK, "--output-dir", str(tmp_path), *flags])
    assert message in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_class_weights_train_with_mixed_soft_targets(train):
    run_dir = train("--class-weights", "auto", "--mixup-alpha", "0.4", "--cutmix-alpha", "0.4")
    assert "class weights (inverse frequency)" in (run_dir / "train.log").read_text()
    assert math.isfinite(read_metrics(run_dir)[0]["train_loss"])


@pytest.fixture
def rare_class_folder(tmp_path):
    """Two classes told apart by brightness, which overlaps: 90 % of training images are
    "common" (darker), 10 % "rare" (lighter); validation holds as many of each."""
    rng = np.random.default_rng(0)
    for split, common, rare in (("train", 180, 20), ("val", 50, 50)):
        write_pngs(tmp_path / "data" / split / "common", common, 0.45, rng)
        write_pngs(tmp_path / "data" / split / "rare", rare, 0.55, rng)
    return tmp_path / "data"


@pytest.mark.slow
def test_rebalancing_raises_the_recall_of_the_rare_class(rare_class_folder, train):
    data = ["--dataset", "image_folder", "--data-dir", str(rare_class_folder), "--num-workers", "0"]
    data += ["--image-size", "8", "--batch-size", "16", "--epochs", "3", "--deterministic"]

    def rare_recall(*flags: str, name: str) -> float:
        return read_metrics(train(*data, *flags, name=name))[-1]["per_class_acc"][1]

    assert rare_recall(name="plain") < 0.1  # the common class wins every doubtful image
    assert rare_recall("--class-weights", "auto", name="weights") > 0.3
    assert rare_recall("--balanced-sampling", name="balanced") > 0.3


@pytest.mark.slow
def test_balanced_sampling_resumes_mid_epoch_exactly(tmp_path):
    flags = [*QUICK, "--epochs", "2", "--deterministic", "--output-dir", str(tmp_path)]
    flags += ["--balanced-sampling", "--num-workers", "2"]
    assert train_main([*flags, "--name", "straight"]) == 0
    assert train_main([*flags, "--name", "cut", "--max-minutes", "1e-9"]) == 75
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["batches_done"] == 1
    assert train_main([*flags, "--name", "cut", "--resume", "auto"]) == 0
    expected = load_weights(tmp_path / "straight" / "last.pt")
    actual = load_weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
