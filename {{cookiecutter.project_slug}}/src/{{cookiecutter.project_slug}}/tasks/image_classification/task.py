"""Image classification through the engine's seam (tasks/base.py)."""

import logging
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from torchmetrics import CatMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from torchvision.transforms import v2

from ...data.image_datasets import training_labels
from ...data.sampling import derived_seed, seeded_cpu_rng
from ...data.spec import DataSpec, per_class
from ...errors import UserError
from ..base import OnnxSignature, PredictInputs, Task, Validation
from . import DECLARATION
from .prediction import image_inputs, prediction_row, top_classes

log = logging.getLogger("train.task")

# MixUp and CutMix draw from a seed of their own, derived from the batch's sample seeds.
MIX_SALT = 0x4D49


class BatchCollator:
    """Stacks seeded samples into a batch and, when enabled, applies MixUp or CutMix to it.

    With mixing, labels become class-probability rows of shape (batch, num_classes).
    """

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float) -> None:
        mixers = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None

    def __call__(self, samples):
        images, labels, seeds = default_collate(samples)
        if self.mix is None:
            return images, labels
        with seeded_cpu_rng(derived_seed(MIX_SALT, *seeds.tolist())):
            return self.mix(images, labels)


class ClassificationScores(Validation):
    """Plain cross-entropy (whatever the training recipe, so val_loss compares across runs),
    top-1 (top-5), per-class accuracy and the confusion matrix; with `keep_predictions`, every
    sample's class probabilities and target too (gathering them is a collective)."""

    def __init__(self, num_classes: int, device: torch.device, keep_predictions: bool) -> None:
        metrics = {
            "val_acc": MulticlassAccuracy(num_classes, average="micro"),
            "val_confusion": MulticlassConfusionMatrix(num_classes),
        }
        if num_classes > 5:
            metrics["val_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.metrics = MetricCollection(metrics).to(device)
        self.mean_loss = MeanMetric().to(device)
        self.keep_predictions = keep_predictions
        self.probabilities, self.labels = CatMetric().to(device), CatMetric().to(device)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        logits = outputs.float()
        self.mean_loss.update(nn.functional.cross_entropy(logits, targets, reduction="none"))
        self.metrics.update(logits, targets)
        if self.keep_predictions:
            self.probabilities.update(logits.softmax(dim=1))
            self.labels.update(targets)

    def compute(self) -> dict:
        results = {name: value.cpu() for name, value in self.metrics.compute().items()}
        summary = {
            "val_loss": float(self.mean_loss.compute()),
            "val_acc": float(results["val_acc"]),
        }
        if "val_top5" in results:
            summary["val_top5"] = float(results["val_top5"])
        summary["per_class_acc"] = per_class_accuracy(results["val_confusion"])
        summary["confusion_matrix"] = results["val_confusion"]  # a tensor: one row per true class
        if self.keep_predictions:
            summary["probabilities"] = self.probabilities.compute().cpu()
            summary["targets"] = self.labels.compute().cpu().long().reshape(-1)  # never 0-d
        return summary


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Each class's recall from the confusion matrix; None for a class without images (its
    accuracy is unknown, not 0)."""
    images = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return [
        float(right) / float(count) if count else None
        for right, count in zip(correct.tolist(), images.tolist(), strict=True)
    ]


class ImageClassification(Task):
    declaration = DECLARATION
    train_metrics = ("acc",)
    recorded_extras = ("per_class_acc",)
    prediction_columns = ("class", "probability", "top_k")
    input_names = ("an image", "images")

    def __init__(self, spec: DataSpec, criterion: nn.Module, collator, device) -> None:
        self.spec, self.criterion, self.collator, self.device = spec, criterion, collator, device

    def collate_fn(self):
        return self.collator

    def forward(self, model, inputs):
        return model(inputs)

    def training_loss(self, model, inputs, targets):
        logits = model(inputs)
        return self.criterion(logits, targets), logits

    def add_running_sums(self, sums, loss, outputs, targets) -> None:
        """Soft (MixUp/CutMix) targets count their top class."""
        hard_targets = targets.argmax(dim=1) if targets.ndim == 2 else targets
        batch = targets.shape[0]
        sums[0] += loss.float() * batch
        sums[1] += (outputs.argmax(dim=1) == hard_targets).sum()
        sums[2] += batch

    def validation(self, keep_predictions: bool) -> ClassificationScores:
        return ClassificationScores(self.spec.num_classes, self.device, keep_predictions)

    def report(self, scores: dict) -> dict:
        return {
            "classes": list(self.spec.class_names),
            **scores,
            "confusion_matrix": scores["confusion_matrix"].tolist(),
        }

    def format_report(self, report: dict) -> str:
        lines = [
            f"{report['split']} ({report['images']} images, {report['weights']} weights) "
            f"loss {report['val_loss']:.4f}  top-1 {report['val_acc']:.4f}",
            "class            accuracy",
        ]
        for name, accuracy in zip(report["classes"], report["per_class_acc"], strict=True):
            shown = "no images" if accuracy is None else f"{accuracy:8.4f}"
            lines.append(f"{name[:16]:<16} {shown}")
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        for row in report["confusion_matrix"]:
            counts = " ".join(f"{count:5d}" for count in row)
            lines.append(counts if sum(row) else f"{counts}  (no images)")
        return "\n".join(lines)

    def example_input(self, batch_size: int = 1):
        spec = self.spec
        return torch.randn(batch_size, spec.in_channels, spec.image_size, spec.image_size)

    def onnx_signature(self) -> OnnxSignature:
        batch = torch.export.Dim("batch", min=1, max=4096)
        return OnnxSignature(("images",), ("logits",), ({0: batch},))

    def predict_inputs(self, sources: list[Path]) -> PredictInputs:
        return image_inputs(sources, self.spec)

    def predict_batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def prediction_rows(self, outputs: torch.Tensor, top_k: int) -> list[tuple[list[str], str]]:
        probabilities = outputs.float().softmax(dim=1).cpu()
        names = self.spec.class_names
        return [prediction_row(top_classes(row, names, top_k)) for row in probabilities]


def loss_class_weights(choice: str, dataset: Dataset, class_names) -> torch.Tensor | None:
    """--class-weights: None, or N / (C * count) per class, which averages 1 over the samples."""
    if choice == "none":
        return None
    counts = torch.bincount(training_labels(dataset), minlength=len(class_names))
    for name, count in zip(class_names, counts.tolist(), strict=True):
        if count == 0:
            raise UserError(
                f"class {name} has no training samples, so --class-weights auto cannot weigh "
                "it: add training images of it, or train with --class-weights none"
            )
    weights = counts.sum() / (len(class_names) * counts.double())
    shown = [f"{weight:.3g}" for weight in weights.tolist()]
    log.info("class weights (inverse frequency): %s", per_class(class_names, shown))
    return weights.float()


def build(config, spec: DataSpec, train_split, device) -> ImageClassification:
    data, optim = config.data, config.optim
    weights = None  # a task built to score a model, not to train one (train_split None)
    if train_split is not None:
        weights = loss_class_weights(optim.class_weights, train_split, spec.class_names)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=optim.label_smoothing)
    collator = BatchCollator(spec.num_classes, data.mixup_alpha, data.cutmix_alpha)
    return ImageClassification(spec, criterion.to(device), collator, device)
