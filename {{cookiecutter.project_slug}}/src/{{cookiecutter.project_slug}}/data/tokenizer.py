"""The subword tokenizer (Hugging Face tokenizers): trained on the training split when a run
starts, or read from a tokenizer.json. Its JSON travels in the data spec, so that resume,
evaluate, predict and export use the run's own tokenizer and never train another."""

import logging
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing

from ..errors import UserError, first_line

log = logging.getLogger("train.data")

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"  # ids 0, 1, 2 in a trained tokenizer
PADDING_TOKENS = (PAD, "<pad>")


def train_tokenizer(texts: list[str], model: str, vocab_size: int) -> Tokenizer:
    """A byte-level BPE (no text is ever unknown) or a WordPiece over words and punctuation,
    each encoding a text as [CLS] followed by its subwords."""
    special = [PAD, UNK, CLS]
    if model == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=special, show_progress=False
        )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = TemplateProcessing(
        single=f"{CLS} $A", special_tokens=[(CLS, tokenizer.token_to_id(CLS))]
    )
    log.info(
        "tokenizer: %s of %d subwords trained on %d training texts",
        model,
        tokenizer.get_vocab_size(),
        len(texts),
    )
    return tokenizer


def read_tokenizer(path: Path) -> Tokenizer:
    """A tokenizer.json whose id 0 pads (as batches are padded with 0)."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for every kind of problem
        raise UserError(
            f"cannot read tokenizer {path} ({first_line(error)}): give a tokenizer.json saved "
            "by Hugging Face tokenizers"
        ) from None
    if tokenizer.id_to_token(0) not in PADDING_TOKENS:
        raise UserError(
            f"tokenizer {path} has {tokenizer.id_to_token(0)!r} at id 0, but batches pad with id "
            f"0: give a tokenizer whose id 0 is {' or '.join(PADDING_TOKENS)}"
        )
    return tokenizer


def tokenizer_from_json(text: str) -> Tokenizer:
    return Tokenizer.from_str(text)


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Each text's token ids, cut to `max_length`, and how many texts were cut."""
    ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    cut = sum(len(sequence) > max_length for sequence in ids)
    return [sequence[:max_length] or [0] for sequence in ids], cut
