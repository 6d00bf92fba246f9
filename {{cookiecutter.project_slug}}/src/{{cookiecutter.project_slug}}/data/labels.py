"""Every sample's label, as the samplers, class weights and insight read them."""

import logging

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .spec import per_class

log = logging.getLogger("train.task")


def training_labels(dataset: Dataset) -> torch.Tensor:
    """Read without loading a sample where the dataset keeps them (`labels`, or torchvision's
    `targets`); a dataset added later that keeps them nowhere has every sample read."""
    for attribute in ("labels", "targets"):
        labels = getattr(dataset, attribute, None)
        if labels is not None:
            return torch.as_tensor(labels).long()
    return torch.tensor([dataset[index][1] for index in range(len(dataset))])


def loss_class_weights(choice: str, dataset: Dataset, class_names) -> torch.Tensor | None:
    """--class-weights: None, or N / (C * count) per class, which averages 1 over the samples."""
    if choice == "none":
        return None
    counts = torch.bincount(training_labels(dataset), minlength=len(class_names))
    for name, count in zip(class_names, counts.tolist(), strict=True):
        if count == 0:
            raise UserError(
                f"class {name} has no training samples, so --class-weights auto cannot weigh "
                "it: add some, or train with --class-weights none"
            )
    weights = counts.sum() / (len(class_names) * counts.double())
    shown = [f"{weight:.3g}" for weight in weights.tolist()]
    log.info("class weights (inverse frequency): %s", per_class(class_names, shown))
    return weights.float()
