"""The toy sequence task through the seam: batches are ({"tokens", "mask"}, {"label"})."""

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ..base import RunningSums, Task, Validation
from . import DECLARATION


def padded(sequences: list[torch.Tensor]) -> dict:
    tokens = nn.utils.rnn.pad_sequence(sequences, batch_first=True)
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    mask = torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    return {"tokens": tokens, "mask": mask}


def training_batch(samples: list) -> tuple[dict, dict]:
    sequences, labels, _ = zip(*samples, strict=True)
    return padded(list(sequences)), {"label": torch.tensor(labels)}


def evaluation_batch(samples: list) -> tuple[dict, dict]:
    sequences, labels = zip(*samples, strict=True)
    return padded(list(sequences)), {"label": torch.tensor(labels)}


class SequenceScores(Validation):
    def __init__(self, device: torch.device) -> None:
        self.loss = MeanMetric().to(device)
        self.accuracy = MulticlassAccuracy(2, average="micro").to(device)

    def update(self, outputs: torch.Tensor, targets: dict) -> None:
        logits, labels = outputs.float(), targets["label"]
        self.loss.update(nn.functional.cross_entropy(logits, labels, reduction="none"))
        self.accuracy.update(logits, labels)

    def compute(self) -> dict:
        return {"val_loss": float(self.loss.compute()), "val_acc": float(self.accuracy.compute())}


class ToySequenceTask(Task):
    declaration = DECLARATION
    train_metrics = ("acc",)

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def collate_fn(self):
        return training_batch

    def eval_collate_fn(self):
        return evaluation_batch

    def forward(self, model, inputs):
        return model(inputs)

    def training_loss(self, model, inputs, targets):
        logits = model(inputs)
        return nn.functional.cross_entropy(logits, targets["label"]), logits

    def running_sums(self, start: list[float] | None, device: torch.device) -> "LabelSums":
        return LabelSums(start, device)

    def validation(self, keep_predictions: bool) -> SequenceScores:
        return SequenceScores(self.device)

    def report(self, scores: dict) -> dict:
        return scores

    def format_report(self, report: dict) -> str:
        return f"{report['split']}: loss {report['val_loss']:.4f} accuracy {report['val_acc']:.4f}"

    def example_input(self, batch_size: int = 1):
        lengths = [3 - index % 2 for index in range(batch_size)]  # padded from two sequences on
        return padded([torch.arange(2, 2 + length) for length in lengths])


def build(config, spec, train_split, device) -> ToySequenceTask:
    return ToySequenceTask(device)


class LabelSums(RunningSums):
    """The plainest running sums: each batch added as it comes."""

    def __init__(self, start: list[float] | None, device: torch.device) -> None:
        self.sums = torch.tensor(start or [0.0, 0.0, 0.0], device=device)

    def add(self, loss, outputs, targets) -> None:
        labels = targets["label"]
        loss_sum, correct, samples = self.sums.unbind()
        loss_sum.add_(loss.float() * len(labels))
        correct.add_((outputs.argmax(dim=1) == labels).sum())
        samples.add_(len(labels))

    def totals(self) -> torch.Tensor:
        return self.sums
