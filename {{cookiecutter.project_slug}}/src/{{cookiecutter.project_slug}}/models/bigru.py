"""A bidirectional GRU: reads the text both ways and classifies from the two final states, so
word order counts. Packed sequences keep padding out of the recurrence."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import ModelInfo, register


class BiGRU(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, width: int = 64, dropout: float = 0.2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width, padding_idx=0)
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, lengths = self.embedding(batch["ids"]), batch["lengths"]
        # Packed sequences' shapes depend on the lengths' values, which export cannot trace.
        if torch.compiler.is_exporting():
            final_states = self.padded_final_states(embedded, lengths)
        else:
            final_states = self.packed_final_states(embedded, lengths)
        return self.classifier(self.dropout(final_states))

    def packed_final_states(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (forward_state, backward_state) = self.gru(packed)
        return torch.cat([forward_state, backward_state], dim=1)

    def padded_final_states(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The states packing gives, from padded tensors export can trace: the forward
        direction's output at each text's last token, and the backward direction's at its first
        token once the text is moved to the row's end (padding first), so it meets no padding."""
        steps = embedded.shape[1]
        shift = steps - lengths
        source = torch.arange(steps, device=embedded.device) - shift[:, None]
        right_aligned = embedded.gather(1, source.clamp(min=0)[..., None].expand_as(embedded))
        right_aligned = right_aligned * (source >= 0)[..., None]
        rows = torch.arange(embedded.shape[0], device=embedded.device)
        width = self.gru.hidden_size
        forward_outputs, _ = self.gru(embedded)
        backward_outputs, _ = self.gru(right_aligned)
        forward_state = forward_outputs[rows, lengths - 1, :width]
        backward_state = backward_outputs[rows, shift, width:]
        return torch.cat([forward_state, backward_state], dim=1)


def build(spec, pretrained: bool) -> BiGRU:
    return BiGRU(spec.vocab_size, spec.num_classes)


register(ModelInfo("bigru", task="text_classification", build=build))
