"""fastText-style bag of embeddings: the mean of a text's token embeddings, then a small
classifier. It ignores word order, trains in seconds on a CPU, and is the baseline the
sequence models have to beat."""

import torch
from torch import nn

from . import ModelInfo, register

PAD_ID = 0


class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, width: int = 64):
        super().__init__()
        # The padding id is left out of each bag's mean, so padding never changes a text's logits.
        self.embedding = nn.EmbeddingBag(vocab_size, width, mode="mean", padding_idx=PAD_ID)
        self.classifier = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, num_classes)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        real_ids = batch["ids"].masked_fill(~batch["mask"], PAD_ID)
        return self.classifier(self.embedding(real_ids))


def build(spec, pretrained: bool) -> BagOfEmbeddings:
    return BagOfEmbeddings(spec.vocab_size, spec.num_classes)


register(ModelInfo("bag_of_embeddings", task="text_classification", build=build))
