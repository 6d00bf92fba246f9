"""What TensorBoard's dashboards read after each validation: the confusion matrix and the PR
curves, whatever the class count; and nothing of a task's inputs or scores that are neither
images nor a classifier's."""

import io
from pathlib import Path

import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.loggers.tensorboard_logger import (
    PR_CURVE_CLASSES,
    TensorBoardLogger,
)

from conftest import QUICK


def validation_events(folder: Path, targets: list[int], classes: int) -> EventAccumulator:
    """What one epoch's log_validation writes for a split of `targets` (random predictions)."""
    names = tuple(f"class {index}" for index in range(classes))
    spec = DataSpec(names, 3, 8, (0.5,) * 3, (0.5,) * 3, 8)
    logger = TensorBoardLogger(folder, parse_config(QUICK), spec, None)
    probabilities = torch.rand(len(targets), classes, generator=torch.Generator().manual_seed(0))
    probabilities = probabilities.softmax(dim=1)
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    for target, predicted in zip(targets, probabilities.argmax(dim=1).tolist(), strict=True):
        matrix[target, predicted] += 1
    results = {"confusion_matrix": matrix, "probabilities": probabilities}
    logger.log_validation({**results, "targets": torch.tensor(targets)}, step=1)
    logger.writer.close()
    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return events


def picture_size(events: EventAccumulator) -> tuple[int, int]:
    (picture,) = events.Images("val/confusion_matrix")
    return Image.open(io.BytesIO(picture.encoded_image_string)).size


def test_a_one_image_split_has_its_confusion_matrix_and_one_pr_curve(tmp_path):
    events = validation_events(tmp_path, [2], classes=5)  # four classes without images
    assert set(events.PluginTagToContent("pr_curves")) == {"pr/class 2"}
    assert min(picture_size(events)) > 0


def test_many_classes_draw_a_bounded_picture_and_pr_curves_of_the_most_confused(tmp_path):
    events = validation_events(tmp_path, [index % 1000 for index in range(3000)], classes=1000)
    assert len(events.PluginTagToContent("pr_curves")) == PR_CURVE_CLASSES
    assert max(picture_size(events)) <= 1000


def test_inputs_other_than_images_and_scores_without_a_confusion_matrix_draw_nothing(tmp_path):
    spec = DataSpec(("absent", "present"), 1, 0, (0.0,), (1.0,), 0)
    logger = TensorBoardLogger(tmp_path, parse_config(QUICK), spec, None)
    tokens = {"tokens": torch.tensor([[2, 3, 1]]), "mask": torch.ones(1, 3, dtype=torch.bool)}
    logger.log_start(nn.Embedding(4, 2), lambda: tokens)
    logger.log_validation({"val_loss": 0.5, "val_acc": 1.0}, step=1)
    logger.writer.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert tags["images"] == [] and tags["tensors"] == [] and not tags["graph"]
