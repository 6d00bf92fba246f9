"""Text classification through the engine's seam (tasks/base.py)."""

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torchmetrics.classification import MulticlassF1Score

from ...data.bucketing import LengthBucketedShuffle
from ...data.labels import loss_class_weights
from ...data.spec import DataSpec
from ..base import OnnxSignature, PredictInputs
from ..classification import ClassificationScores, ClassificationTask
from . import DECLARATION
from .prediction import text_inputs

PAD_ID = 0
FIRST_WORD_ID = 3  # after [PAD], [UNK] and [CLS]


def padded_batch(sequences: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Token ids padded (with PAD_ID, at the end) to the batch's longest sequence, the mask of
    real tokens and each sequence's length."""
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    ids = pad_sequence(sequences, batch_first=True, padding_value=PAD_ID)
    mask = torch.arange(ids.shape[1]) < lengths[:, None]
    return {"ids": ids, "mask": mask, "lengths": lengths}


def training_batch(samples) -> tuple[dict, torch.Tensor]:
    """(ids, label, sample seed) triples: text needs no seeded augmentation."""
    sequences, labels, _ = zip(*samples, strict=True)
    return padded_batch(list(sequences)), torch.tensor(labels)


def evaluation_batch(samples) -> tuple[dict, torch.Tensor]:
    sequences, labels = zip(*samples, strict=True)
    return padded_batch(list(sequences)), torch.tensor(labels)


class TextScores(ClassificationScores):
    """The classification scores plus macro-F1, and each class's precision and recall (None
    where undefined: a class never predicted, or without texts)."""

    def __init__(self, num_classes: int, device: torch.device, keep_predictions: bool) -> None:
        super().__init__(num_classes, device, keep_predictions)
        self.f1 = MulticlassF1Score(num_classes, average="macro").to(device)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        super().update(outputs, targets)
        self.f1.update(outputs.float(), targets)

    def compute(self) -> dict:
        scores = super().compute()
        confusion = scores["confusion_matrix"]
        scores["val_f1"] = float(self.f1.compute())
        scores["per_class_precision"] = ratios(confusion.diagonal(), confusion.sum(dim=0))
        scores["per_class_recall"] = ratios(confusion.diagonal(), confusion.sum(dim=1))
        return scores


def ratios(counts: torch.Tensor, totals: torch.Tensor) -> list[float | None]:
    return [
        float(count) / float(total) if total else None
        for count, total in zip(counts.tolist(), totals.tolist(), strict=True)
    ]


class TextClassification(ClassificationTask):
    declaration = DECLARATION
    recorded_extras = ("per_class_precision", "per_class_recall")
    input_names = ("a text", "texts")

    def __init__(self, spec: DataSpec, criterion: nn.Module, data_config, device) -> None:
        self.spec, self.criterion, self.data, self.device = spec, criterion, data_config, device

    def collate_fn(self):
        return training_batch

    def eval_collate_fn(self):
        return evaluation_batch

    def training_sampler(self, train, rank: int, world_size: int):
        """Batches of similar lengths, unless turned off or class-balanced draws are asked for."""
        if self.data.no_bucketing or self.data.balanced_sampling:
            return None
        return LengthBucketedShuffle(
            train.lengths, self.data.batch_size, rank, world_size, self.data.seed
        )

    def validation(self, keep_predictions: bool) -> TextScores:
        return TextScores(self.spec.num_classes, self.device, keep_predictions)

    def shown_sample(self, dataset, index: int) -> str:
        """The text as its file holds it, not as the tokenizer cut it."""
        return dataset.texts[index]

    def format_report(self, report: dict) -> str:
        lines = [
            f"{report['split']} ({report['texts']} texts, {report['weights']} weights) "
            f"loss {report['val_loss']:.4f}  accuracy {report['val_acc']:.4f}  "
            f"macro-F1 {report['val_f1']:.4f}",
            "class            precision  recall",
        ]
        rows = zip(
            report["classes"],
            report["per_class_precision"],
            report["per_class_recall"],
            strict=True,
        )
        for name, precision, recall in rows:
            lines.append(f"{name[:16]:<16} {shown(precision):>9}  {shown(recall):>9}")
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        for row in report["confusion_matrix"]:
            counts = " ".join(f"{count:5d}" for count in row)
            lines.append(counts if sum(row) else f"{counts}  (no texts)")
        return "\n".join(lines)

    def example_input(self, batch_size: int = 1):
        """Texts of different lengths, so that export sees real padding; the longest grows with
        the batch, so that export's checks run other sequence lengths than its example's."""
        longest = min(4 + 3 * batch_size, self.spec.max_length)
        lengths = longest - torch.arange(batch_size) * 3 % longest
        words = torch.randint(FIRST_WORD_ID, self.spec.vocab_size, (batch_size, longest))
        mask = torch.arange(longest) < lengths[:, None]
        return {"ids": words * mask, "mask": mask, "lengths": lengths}

    def onnx_signature(self) -> OnnxSignature:
        batch = torch.export.Dim("batch", min=1, max=4096)
        sequence = torch.export.Dim("sequence", min=2, max=self.spec.max_length)
        axes = {
            "ids": {0: batch, 1: sequence},
            "mask": {0: batch, 1: sequence},
            "lengths": {0: batch},
        }
        return OnnxSignature(("ids", "mask", "lengths"), ("logits",), (axes,))

    def predict_inputs(self, sources: list[str]) -> PredictInputs:
        return text_inputs(sources, self.spec)

    def predict_batch(self, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return padded_batch(inputs)


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def build(config, spec: DataSpec, train_split, device) -> TextClassification:
    optim = config.optim
    weights = None  # a task built to score a model, not to train one (train_split None)
    if train_split is not None:
        weights = loss_class_weights(optim.class_weights, train_split, spec.class_names)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=optim.label_smoothing)
    return TextClassification(spec, criterion.to(device), config.data, device)
