"""The mean of a sequence's token embeddings (padding masked out), then a linear layer."""

import torch
from torch import nn

from . import ModelInfo, register


class BagOfTokens(nn.Module):
    def __init__(self, num_classes: int, vocabulary: int = 16, width: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        mask = batch["mask"].unsqueeze(-1).float()
        summed = (self.embedding(batch["tokens"]) * mask).sum(dim=1)
        return self.head(summed / mask.sum(dim=1).clamp(min=1))


register(
    ModelInfo(
        "toy_bag",
        task="toy_sequences",
        build=lambda spec, pretrained: BagOfTokens(len(spec.class_names)),
    )
)
