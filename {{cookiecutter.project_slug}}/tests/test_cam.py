"""--cam-every: Grad-CAM finds the evidence, shows the same images, and changes no training."""

import math

import pytest
import torch
from PIL import Image

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.labels import training_labels
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.datasets import build_datasets
from {{ cookiecutter.project_slug }}.insight.cam import (
    CAPTION_HEIGHT,
    GAP,
    GRID_COLUMNS,
    GRID_PADDING,
    MAX_IMAGES,
    MIN_SIDE,
    choose_images,
    grad_cam,
)
from {{ cookiecutter.project_slug }}.loggers.base import LOGGER_TYPES, RunLogger
from {{ cookiecutter.project_slug }}.models import build_model, model_info
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint

from conftest import QUICK, load_weights, read_metrics

SIDE, BAR = 16, 6
BARS = DataSpec(("horizontal", "vertical"), 1, SIDE, (0.0,), (1.0,), SIDE)
TIMINGS = {"samples_per_second", "epoch_seconds"}


def bar_images(count: int, generator: torch.Generator):
    """Noise, each image with one bright 2 x BAR bar somewhere: horizontal is class 0, vertical
    class 1. Only the bar's pixels tell the classes apart. Returns images, labels, bar boxes."""
    images = torch.randn(count, 1, SIDE, SIDE, generator=generator) * 0.3
    labels = torch.randint(2, (count,), generator=generator)
    boxes = []
    for image, label in zip(images, labels.tolist(), strict=True):
        height, width = (2, BAR) if label == 0 else (BAR, 2)
        top, left = (
            int(torch.randint(SIDE - side + 1, (1,), generator=generator))
            for side in (height, width)
        )
        image[0, top : top + height, left : left + width] += 2.0
        boxes.append((top, left, height, width))
    return images, labels, boxes


def trained_on_bars(generator: torch.Generator) -> torch.nn.Module:
    model = build_model("simple_cnn", BARS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    images, labels, _ = bar_images(640, generator)
    for _ in range(20):
        batch = torch.randint(len(labels), (32,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_heat_map_peaks_on_the_bar_that_decides_the_class():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = trained_on_bars(generator)
    images, labels, boxes = bar_images(32, generator)
    heat_maps, predicted = grad_cam(model, model_info("simple_cnn").cam_layer(model), images)
    assert (predicted == labels).float().mean() >= 0.9
    assert heat_maps.shape == (32, SIDE, SIDE) and 0 <= heat_maps.min() <= heat_maps.max() == 1
    on_the_bar = 0
    for heat, (top, left, height, width) in zip(heat_maps, boxes, strict=True):
        row, column = divmod(int(heat.argmax()), SIDE)
        # One pixel of slack: the block's feature map has half the image's resolution.
        on_the_bar += top - 1 <= row <= top + height and left - 1 <= column <= left + width
    assert on_the_bar >= 28, f"peak on the bar in {on_the_bar} of 32 images"


def small_model(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    spec = DataSpec(tuple("abc"), 3, 32, (0.5,) * 3, (0.5,) * 3, 32)
    torch.manual_seed(0)
    return build_model(name, spec), torch.randn(4, 3, 32, 32)


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18"])
def test_the_model_is_left_as_it_was_found(name):
    model, images = small_model(name)
    block = model_info(name).cam_layer(model)
    rng_before = torch.get_rng_state()
    heat_maps, _ = grad_cam(model.train(), block, images)
    assert heat_maps.shape == (4, 32, 32) and heat_maps.dtype == torch.float32
    assert all(module.training for module in model.modules())
    assert not block._forward_hooks
    assert all(parameter.grad is None for parameter in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng_before)
    grad_cam(model.eval(), block, images)
    assert not any(module.training for module in model.modules())


@pytest.mark.slow
def test_float32_under_autocast_and_eager_when_compiled():
    model, images = small_model("simple_cnn")
    expected, _ = grad_cam(model, model_info("simple_cnn").cam_layer(model), images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast, _ = grad_cam(model, model_info("simple_cnn").cam_layer(model), images)
    assert torch.equal(under_autocast, expected)
    model.compile()  # in place, as --compile does: the hook still sees the block run
    compiled, _ = grad_cam(model, model_info("simple_cnn").cam_layer(model), images)
    assert torch.equal(compiled, expected)


def test_images_are_balanced_across_classes_in_class_order():
    ten_classes = torch.arange(100) % 10
    chosen = choose_images(ten_classes, 10)
    counts = torch.bincount(ten_classes[chosen], minlength=10)
    assert len(chosen) == MAX_IMAGES and set(counts.tolist()) == {1, 2}
    assert ten_classes[chosen].tolist() == sorted(ten_classes[chosen].tolist())
    rare_class = torch.tensor([0] * 50 + [1] * 3 + [2])
    assert torch.bincount(rare_class[choose_images(rare_class, 3)]).tolist() == [2, 2, 1]


def test_the_images_do_not_depend_on_the_seed():
    labels = torch.randint(10, (200,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    first = choose_images(labels, 10)
    torch.manual_seed(6)
    assert choose_images(labels, 10) == first


def grid_size(images: int) -> tuple[int, int]:
    """(width, height) of the PNG for this many 8 px images: panels of image and overlay, each
    enlarged to MIN_SIDE, labels below."""
    panel_width, panel_height = 2 * MIN_SIDE + GAP, MIN_SIDE + CAPTION_HEIGHT
    columns, rows = min(images, GRID_COLUMNS), math.ceil(images / GRID_COLUMNS)
    return (
        columns * (panel_width + GRID_PADDING) + GRID_PADDING,
        rows * (panel_height + GRID_PADDING) + GRID_PADDING,
    )


def chosen_count(*flags: str) -> int:
    splits, spec = build_datasets(parse_config([*QUICK, *flags]).data)
    return len(choose_images(training_labels(splits["val"]), spec.num_classes))


def left_halves(grid: Image.Image, images: int) -> list[bytes]:
    """The input images of a grid's panels (each panel's left half), as raw pixels."""
    panel_width, panel_height = 2 * MIN_SIDE + GAP, MIN_SIDE + CAPTION_HEIGHT
    halves = []
    for index in range(images):
        row, column = divmod(index, GRID_COLUMNS)
        left = GRID_PADDING + column * (panel_width + GRID_PADDING)
        top = GRID_PADDING + row * (panel_height + GRID_PADDING)
        halves.append(grid.crop((left, top, left + MIN_SIDE, top + MIN_SIDE)).tobytes())
    return halves


@pytest.mark.slow
def test_every_epoch_saves_a_grid_of_the_same_images(train):
    run_dir = train("--epochs", "2", "--cam-every", "1")
    assert sorted(path.name for path in (run_dir / "cam").iterdir()) == [
        "epoch-001.png",
        "epoch-002.png",
    ]
    images = chosen_count()
    grids = [Image.open(run_dir / "cam" / f"epoch-00{epoch}.png") for epoch in (1, 2)]
    for grid in grids:
        assert grid.format == "PNG" and grid.mode == "RGB"
        assert grid.size == grid_size(images)
        assert len(grid.getcolors(maxcolors=grid.width * grid.height)) > 100
    assert left_halves(grids[0], images) == left_halves(grids[1], images)
    assert "cam_every: 1" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_every_nth_epoch_with_the_ema(train):
    run_dir = train("--epochs", "2", "--cam-every", "2", "--ema", "0.9")
    assert [path.name for path in (run_dir / "cam").iterdir()] == ["epoch-002.png"]


def test_each_grid_is_drawn_after_its_epochs_checkpoint(train):
    """A stop signal arriving while an epoch's Grad-CAM is drawn must not lose the epoch."""
    saved_epochs = []

    class CheckpointWatcher(RunLogger):
        def __init__(self, run_dir, config, spec, resumed) -> None:
            self.last = run_dir / "last.pt"

        def log_figure(self, figure, step) -> None:
            saved = load_checkpoint(self.last)["epoch"] if self.last.exists() else 0
            saved_epochs.append((figure.epoch, saved))

    LOGGER_TYPES.append(CheckpointWatcher)
    try:
        train("--cam-every", "1")
    finally:
        LOGGER_TYPES.remove(CheckpointWatcher)
    assert saved_epochs == [(1, 1)]


def test_mlp_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as raised:
        parse_config(["--model", "mlp", "--cam-every", "1"])
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "error: --model mlp has no spatial feature map for Grad-CAM: drop --cam-every"
    )
    assert "\n" not in error


def without_timings(records: list[dict]) -> list[dict]:
    return [
        {key: value for key, value in record.items() if key not in TIMINGS} for record in records
    ]


@pytest.mark.slow
def test_grad_cam_changes_nothing_trained_even_across_a_resume(train):
    flags = ("--deterministic", "--seed", "3", "--epochs", "2")
    straight = train(*flags, "--cam-every", "1", name="straight")
    train(*flags, "--cam-every", "1", "--stop-after-epochs", "1", name="resumed")
    resumed = train(*flags, "--cam-every", "1", "--resume", "auto", name="resumed")
    plain = train(*flags, name="plain")
    expected = load_weights(plain / "last.pt")
    for run_dir in (straight, resumed):
        weights = load_weights(run_dir / "last.pt")
        assert all(torch.equal(expected[key], weights[key]) for key in expected), run_dir.name
        assert without_timings(read_metrics(run_dir)) == without_timings(read_metrics(plain))
    assert (resumed / "cam" / "epoch-002.png").read_bytes() == (
        straight / "cam" / "epoch-002.png"
    ).read_bytes()
