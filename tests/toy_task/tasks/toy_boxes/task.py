"""The toy detection task through the seam: batches are (a list of pictures, a list of
{"boxes", "labels"} dicts), as torchvision's detectors take them."""

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchvision.ops import box_iou

from ..base import RunningSums, Task, Validation
from . import DECLARATION

CLASSES = 3


def training_batch(samples: list) -> tuple[list, list]:
    pictures, targets, _ = zip(*samples, strict=True)
    return list(pictures), list(targets)


def evaluation_batch(samples: list) -> tuple[list, list]:
    pictures, targets = zip(*samples, strict=True)
    return list(pictures), list(targets)


def found(model, pictures: list[torch.Tensor]) -> dict:
    """The model's outputs, with each picture's sides (width, height, width, height) to turn
    its box's fractions into pixels."""
    outputs = model(pictures)
    sides = [[picture.shape[2], picture.shape[1]] * 2 for picture in pictures]
    return {**outputs, "sides": torch.tensor(sides, device=outputs["boxes"].device)}


def true_boxes(targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The one box of each picture, (N, 4) in pixels, and its label, (N,)."""
    return torch.cat([t["boxes"] for t in targets]), torch.cat([t["labels"] for t in targets])


def per_picture_loss(outputs: dict, targets: list[dict]) -> torch.Tensor:
    boxes, labels = true_boxes(targets)
    fractions = boxes / outputs["sides"]
    placed = nn.functional.smooth_l1_loss(
        outputs["boxes"].float(), fractions, beta=0.05, reduction="none"
    ).sum(dim=1)
    named = nn.functional.cross_entropy(outputs["logits"].float(), labels, reduction="none")
    return placed * 10 + named


def paired_iou(outputs: dict, targets: list[dict]) -> torch.Tensor:
    """Each found box's IoU with its picture's true box."""
    boxes, _ = true_boxes(targets)
    return box_iou(outputs["boxes"].float() * outputs["sides"], boxes).diagonal()


class BoxScores(Validation):
    def __init__(self, device: torch.device) -> None:
        self.loss = MeanMetric().to(device)
        self.iou = MeanMetric().to(device)
        self.accuracy = MulticlassAccuracy(CLASSES, average="micro").to(device)

    def update(self, outputs: dict, targets: list[dict]) -> None:
        self.loss.update(per_picture_loss(outputs, targets))
        self.iou.update(paired_iou(outputs, targets))
        self.accuracy.update(outputs["logits"].float(), true_boxes(targets)[1])

    def compute(self) -> dict:
        return {
            "val_loss": float(self.loss.compute()),
            "val_iou": float(self.iou.compute()),
            "val_acc": float(self.accuracy.compute()),
        }


class ToyBoxTask(Task):
    declaration = DECLARATION
    train_metrics = ("iou",)

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def collate_fn(self):
        return training_batch

    def eval_collate_fn(self):
        return evaluation_batch

    def forward(self, model, inputs):
        return found(model, inputs)

    def training_loss(self, model, inputs, targets):
        outputs = found(model, inputs)
        return per_picture_loss(outputs, targets).mean(), outputs

    def running_sums(self, start: list[float] | None, device: torch.device) -> "BoxSums":
        return BoxSums(start, device)

    def validation(self, keep_predictions: bool) -> BoxScores:
        return BoxScores(self.device)

    def report(self, scores: dict) -> dict:
        return scores

    def format_report(self, report: dict) -> str:
        return f"{report['split']}: loss {report['val_loss']:.4f} IoU {report['val_iou']:.4f}"

    def example_input(self, batch_size: int = 1):
        return [torch.rand(3, 20 + index % 3, 24) for index in range(batch_size)]


def build(config, spec, train_split, device) -> ToyBoxTask:
    return ToyBoxTask(device)


class BoxSums(RunningSums):
    def __init__(self, start: list[float] | None, device: torch.device) -> None:
        self.sums = torch.tensor(start or [0.0, 0.0, 0.0], device=device)

    def add(self, loss, outputs, targets) -> None:
        loss_sum, iou_sum, samples = self.sums.unbind()
        loss_sum.add_(loss.float() * len(targets))
        iou_sum.add_(paired_iou(outputs, targets).sum())
        samples.add_(len(targets))

    def totals(self) -> torch.Tensor:
        return self.sums
