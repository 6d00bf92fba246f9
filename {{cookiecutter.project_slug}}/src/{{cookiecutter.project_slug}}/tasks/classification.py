"""Validation scores every classification task shares: loss, accuracy, per-class accuracy and
the confusion matrix, reduced across DDP ranks by torchmetrics."""

import torch
from torch import nn
from torchmetrics import CatMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from .base import RunningSums, Task, Validation


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
    """Each class's recall from the confusion matrix; None for a class without samples (its
    accuracy is unknown, not 0)."""
    counts = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return [
        float(right) / float(count) if count else None
        for right, count in zip(correct.tolist(), counts.tolist(), strict=True)
    ]


def top_classes(probabilities: torch.Tensor, class_names, k: int) -> list[tuple[str, float]]:
    values, indices = probabilities.topk(k)
    ranked = zip(indices.tolist(), values.tolist(), strict=True)
    return [(class_names[index], value) for index, value in ranked]


def prediction_row(ranked: list[tuple[str, float]]) -> tuple[list[str], str]:
    """The CSV cells class, probability and top_k, and the console line."""
    (name, probability), top_k = ranked[0], ";".join(f"{n}:{p:.6f}" for n, p in ranked)
    shown = ", ".join(f"{n} {p:.4f}" for n, p in ranked)
    return [name, f"{probability:.6f}", top_k], shown


class ClassificationTask(Task):
    """What the classification tasks share: logits from `model(inputs)`, the task's criterion,
    accuracy as the running training metric, the report's classes and predict's top classes.
    A subclass sets `spec` and `criterion`."""

    train_metrics = ("acc",)
    prediction_columns = ("class", "probability", "top_k")

    def forward(self, model, inputs):
        return model(inputs)

    def training_loss(self, model, inputs, targets):
        logits = model(inputs)
        return self.criterion(logits, targets), logits

    def running_sums(self, start: list[float] | None, device: torch.device) -> "AccuracySums":
        return AccuracySums(start, device)

    def report(self, scores: dict) -> dict:
        return {
            "classes": list(self.spec.class_names),
            **scores,
            "confusion_matrix": scores["confusion_matrix"].tolist(),
        }

    def prediction_rows(self, outputs: torch.Tensor, top_k: int) -> list[tuple[list[str], str]]:
        probabilities = outputs.float().softmax(dim=1).cpu()
        names = self.spec.class_names
        return [prediction_row(top_classes(row, names, top_k)) for row in probabilities]


class AccuracySums(RunningSums):
    """Loss and correct predictions. The loss is added at each batch, in order (one kernel, so
    a resumed epoch adds it up exactly as an uninterrupted one); the predicted classes and
    targets are kept and counted KEPT_BATCHES batches at a time, or when the totals are read.
    Soft targets (class-probability rows, as MixUp and CutMix make) count their top class."""

    KEPT_BATCHES = 32

    def __init__(self, start: list[float] | None, device: torch.device) -> None:
        self.sums = torch.tensor(start or [0.0, 0.0, 0.0], device=device)
        self.loss_sum, self.correct, self.samples = self.sums.unbind()
        self.kept = []

    def add(self, loss, outputs, targets) -> None:
        self.loss_sum.add_(loss.float(), alpha=targets.shape[0])
        self.kept.append((outputs.argmax(dim=1), targets))
        if len(self.kept) == self.KEPT_BATCHES:
            self.count_kept()

    def totals(self) -> torch.Tensor:
        self.count_kept()
        return self.sums

    def count_kept(self) -> None:
        if not self.kept:
            return
        predicted, targets = zip(*self.kept, strict=True)
        hard_targets = torch.cat([t.argmax(dim=1) if t.ndim == 2 else t for t in targets])
        self.correct.add_((torch.cat(predicted) == hard_targets).sum())
        self.samples.add_(len(hard_targets))
        self.kept.clear()
