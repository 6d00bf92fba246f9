"""A small Transformer encoder: token and learned position embeddings, two pre-norm layers,
then the mean of the real tokens' outputs (or the [CLS] token's). Attention sees the whole text
at once, and the padding mask keeps padding out of every attention and of the pooling."""

import torch
from torch import nn

from . import ModelInfo, register


class TextTransformer(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        max_length: int,
        width: int = 64,
        heads: int = 4,
        layers: int = 2,
        pooling: str = "mean",
    ):
        super().__init__()
        if pooling not in ("mean", "first"):
            raise ValueError(f"pooling must be 'mean' or 'first', not {pooling!r}")
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, width, padding_idx=0)
        self.positions = nn.Embedding(max_length, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.1, batch_first=True, norm_first=True
        )
        # Nested tensors would drop the padded positions' outputs: keep every row dense.
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["ids"], batch["mask"]
        tokens = self.embedding(ids) + self.positions.weight[: ids.shape[1]]
        encoded = self.encoder(tokens, src_key_padding_mask=~mask)
        return self.classifier(self.pool(encoded, mask, batch["lengths"]))

    def pool(self, encoded: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor):
        if self.pooling == "first":
            return encoded[:, 0]  # every text starts with [CLS]
        summed = (encoded * mask[..., None]).sum(dim=1)
        return summed / lengths[:, None]


def build(spec, pretrained: bool) -> TextTransformer:
    return TextTransformer(spec.vocab_size, spec.num_classes, spec.max_length)


register(ModelInfo("transformer", task="text_classification", build=build))
