"""Image classification through the engine's seam (tasks/base.py)."""

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import default_collate
from torchvision.transforms import v2

from ...data.labels import loss_class_weights
from ...data.sampling import derived_seed, seeded_cpu_rng
from ...data.spec import DataSpec
from ..base import OnnxSignature, PredictInputs
from ..classification import ClassificationScores, ClassificationTask
from . import DECLARATION
from .prediction import image_inputs

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


class ImageClassification(ClassificationTask):
    declaration = DECLARATION
    recorded_extras = ("per_class_acc",)
    input_names = ("an image", "images")

    def __init__(self, spec: DataSpec, criterion: nn.Module, collator, device) -> None:
        self.spec, self.criterion, self.collator, self.device = spec, criterion, collator, device

    def collate_fn(self):
        return self.collator

    def validation(self, keep_predictions: bool) -> ClassificationScores:
        return ClassificationScores(self.spec.num_classes, self.device, keep_predictions)

    def shown_sample(self, dataset, index: int) -> torch.Tensor:
        """The image as the model receives it, its normalisation undone."""
        image, _ = dataset[index]
        mean = torch.tensor(self.spec.mean).view(-1, 1, 1)
        std = torch.tensor(self.spec.std).view(-1, 1, 1)
        return (image.float() * std + mean).clamp(0, 1)

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

    def predict_inputs(self, sources: list[str]) -> PredictInputs:
        return image_inputs([Path(source) for source in sources], self.spec)

    def predict_batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)


def build(config, spec: DataSpec, train_split, device) -> ImageClassification:
    data, optim = config.data, config.optim
    weights = None  # a task built to score a model, not to train one (train_split None)
    if train_split is not None:
        weights = loss_class_weights(optim.class_weights, train_split, spec.class_names)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=optim.label_smoothing)
    collator = BatchCollator(spec.num_classes, data.mixup_alpha, data.cutmix_alpha)
    task = ImageClassification(spec, criterion.to(device), collator, device)
    if config.model.channels_last:
        task.memory_format = torch.channels_last
    return task
