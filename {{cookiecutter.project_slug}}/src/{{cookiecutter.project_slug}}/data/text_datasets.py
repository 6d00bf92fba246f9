"""Texts as token id sequences, encoded once when the data is built, and the spec that carries
their tokenizer."""

import dataclasses
import logging

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from .spec import DataSpec
from .tokenizer import encode, read_tokenizer, tokenizer_from_json, train_tokenizer

log = logging.getLogger("train.data")


class EncodedTexts(Dataset):
    """Item i: (text i's token ids as a tensor, its class index). `lengths` lets a sampler batch
    texts of similar lengths; `texts` keeps the words for reports."""

    def __init__(self, texts: list[str], labels: list[int], ids: list[list[int]]) -> None:
        self.texts, self.labels, self.ids = texts, labels, ids
        self.lengths = [len(sequence) for sequence in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor(self.ids[index]), self.labels[index]


def text_spec(config, class_names, train_texts: list[str], trained_spec) -> DataSpec:
    """The trained run's spec when there is one: its tokenizer is the model's and is never trained
    or read again (a --tokenizer file moved or changed since then changes nothing). Else a
    tokenizer read from --tokenizer, or trained on the training texts."""
    if trained_spec is not None:
        # With the data's classes: evaluate names any difference from the checkpoint's.
        return dataclasses.replace(trained_spec, class_names=tuple(class_names))
    if config.tokenizer is not None:
        tokenizer = read_tokenizer(config.tokenizer)
        size = tokenizer.get_vocab_size()
        log.info("tokenizer: %d subwords read from %s", size, config.tokenizer)
    else:
        trained = train_tokenizer(train_texts, config.tokenizer_model, config.vocab_size)
        tokenizer = tokenizer_from_json(rank0s_text(trained.to_str()))
    return DataSpec(
        tuple(class_names),
        tokenizer=tokenizer.to_str(),
        vocab_size=tokenizer.get_vocab_size(),
        max_length=config.max_length,
    )


def rank0s_text(text: str) -> str:
    """Rank 0's `text` on every DDP rank (the text itself outside DDP): WordPiece training breaks
    ties in another order in every process (huggingface/tokenizers#1794), and every rank must
    encode the texts as the tokenizer the checkpoint keeps does."""
    if not (dist.is_available() and dist.is_initialized()):
        return text
    shared = [text]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def encoded_splits(pairs: dict[str, list[tuple[str, str]]], spec: DataSpec) -> dict:
    """Each split's (text, label name) pairs encoded with the spec's tokenizer; train.log counts
    the texts cut to --max-length."""
    tokenizer = tokenizer_from_json(spec.tokenizer)
    index_of = {name: index for index, name in enumerate(spec.class_names)}
    splits = {}
    for name, rows in pairs.items():
        texts = [text for text, _ in rows]
        ids, cut = encode(tokenizer, texts, spec.max_length)
        if cut:
            log.warning(
                "%s split: %d of %d texts are longer than --max-length %d tokens and were cut",
                name,
                cut,
                len(texts),
                spec.max_length,
            )
        splits[name] = EncodedTexts(texts, [index_of[label] for _, label in rows], ids)
    return splits
