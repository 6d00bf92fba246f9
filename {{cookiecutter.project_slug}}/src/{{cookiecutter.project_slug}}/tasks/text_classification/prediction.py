"""predict's side of text classification: the texts it reads are the command line's words
themselves, each line of a text file, or each line of stdin ("-")."""

import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ...data.tokenizer import encode, tokenizer_from_json
from ...errors import UserError
from ..base import PredictInputs

STDIN = "-"


def text_inputs(sources: list[str], spec) -> PredictInputs:
    names, texts = [], []
    for source in sources:
        for name, text in texts_of(source):
            names.append(name)
            texts.append(text)
    if not texts:
        raise UserError("no text to classify: give texts, text files (one per line) or - for stdin")
    ids, _ = encode(tokenizer_from_json(spec.tokenizer), texts, spec.max_length)
    return PredictInputs(names, [], EncodedInputs(ids))


def texts_of(source: str) -> list[tuple[str, str]]:
    """(name, text) pairs: a file's or stdin's non-blank lines named file:line, else the
    argument itself as one text."""
    if source == STDIN:
        return numbered_lines("stdin", sys.stdin.read())
    path = Path(source)
    if not path.is_file():
        return [(source, source.strip())] if source.strip() else []
    try:
        return numbered_lines(source, path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise UserError(
            f"{source} is not UTF-8 text (byte {error.start}): save it as UTF-8"
        ) from None


def numbered_lines(name: str, content: str) -> list[tuple[str, str]]:
    return [
        (f"{name}:{number}", line.strip())
        for number, line in enumerate(content.splitlines(), start=1)
        if line.strip()
    ]


class EncodedInputs(Dataset):
    def __init__(self, ids: list[list[int]]) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return torch.tensor(self.ids[index]), ""
