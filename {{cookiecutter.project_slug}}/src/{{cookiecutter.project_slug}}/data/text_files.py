"""The user's own labelled texts under --data-dir: split layouts, class lists and carving.

Layouts (split names are matched case-insensitively; SPLIT_ALIASES lists them):
- train.csv (or .tsv, .jsonl) with val.csv (or valid, validation, eval, dev) and/or test.csv;
  without a val file, val is carved from train
- one table file: --data-dir names it, or the folder holds only it; val is carved from it
- class folders of .txt documents (one text each): root/train/<class>/*.txt with val/ and/or
  test/ (train/ alone: val carved), or root/<class>/*.txt (val carved)
Carving holds out round(rows x --val-fraction) rows of every class, chosen by --seed, and keeps
at least one training row per class. Hidden files and folders and __MACOSX are skipped. The
classes are the training split's labels; val and test rows of other labels are left out.
"""

import logging
import os
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .text_tables import TABLE_SUFFIXES, Row, listed, read_document, read_table

SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "eval", "dev"),
    "test": ("test", "testing"),
}
SPLIT_NAMES = {"val": "validation", "test": "test"}

log = logging.getLogger("train.data")


@dataclass(frozen=True)
class TextSplits:
    """(text, label) rows per split ("train", "val" and, when the data has one, "test")."""

    splits: dict[str, list[Row]]
    class_names: tuple[str, ...]


def read_text_splits(
    data_dir: Path, text_column: str, label_column: str, val_fraction: float, seed: int
) -> TextSplits:
    sources = split_sources(data_dir)
    splits = {
        split: read_rows(source, text_column, label_column) for split, source in sources.items()
    }
    classes = training_classes(sources["train"], splits["train"])
    for split in ("val", "test"):
        if split in splits:
            splits[split] = known_labels_only(sources[split], split, splits[split], classes)
    if "val" not in splits:
        splits["train"], splits["val"] = carve_validation(splits["train"], val_fraction, seed)
    for split in ("val", "test"):
        if split in splits:
            warn_of_leakage(split, splits[split], splits["train"])
    return TextSplits(splits, tuple(classes))


def text_class_names(data_dir: Path, text_column: str, label_column: str) -> list[str]:
    """The training labels, sorted: the classes a run on this data has."""
    train = split_sources(data_dir)["train"]
    return training_classes(train, read_rows(train, text_column, label_column))


def scored_whole(data_dir: Path) -> bool:
    """Whether the data is one whole (a single file, or a folder without split files or split
    folders) that evaluate scores every row of."""
    if not data_dir.is_dir():
        return True
    entries = [entry for entry in visible_entries(data_dir) if entry.is_dir() or is_table(entry)]
    return not any(split_of(split_name(entry)) for entry in entries)


def split_sources(data_dir: Path) -> dict[str, Path]:
    """{"train": file or folder, "val": ..., "test": ...} as present."""
    if data_dir.is_file():
        return {"train": table_file(data_dir)}
    if not data_dir.is_dir():
        raise UserError(f"data {data_dir} does not exist: check --data-dir")
    entries = visible_entries(data_dir)
    tables = [entry for entry in entries if entry.is_file() and is_table(entry)]
    folders = [entry for entry in entries if entry.is_dir()]
    split_tables = [entry for entry in tables if split_of(entry.stem)]
    if split_tables:
        return by_split(data_dir, split_tables)
    split_folders = [entry for entry in folders if split_of(entry.name)]
    if split_folders:
        check_only_split_folders(data_dir, split_folders, folders)
        return by_split(data_dir, split_folders)
    if folders:
        return {"train": data_dir}
    if len(tables) == 1:
        return {"train": tables[0]}
    raise UserError(
        f"data folder {data_dir} holds {len(tables)} table files ({names(tables)}) and no class "
        "folders: name them train.csv and val.csv (or .tsv, .jsonl), or put .txt documents in "
        f"{data_dir}/<class>/"
    )


def check_only_split_folders(data_dir: Path, split_folders: list[Path], folders: list[Path]):
    others = [entry for entry in folders if entry not in split_folders]
    if others:
        raise UserError(
            f"data folder {data_dir} mixes split folders ({names(split_folders)}) with other "
            f"folders ({names(others)}): put every class folder inside {data_dir}/train (and "
            "val, test)"
        )


def table_file(path: Path) -> Path:
    if not is_table(path):
        raise UserError(
            f"data file {path} is not a .csv, .tsv or .jsonl file: save it in one of these formats"
        )
    return path


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def visible_entries(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if not is_hidden_name(entry.name))


def is_hidden_name(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def split_name(entry: Path) -> str:
    """The name that says an entry's split: a table file's stem, a folder's name."""
    return entry.stem if entry.is_file() else entry.name


def split_of(name: str) -> str | None:
    return next(
        (split for split, aliases in SPLIT_ALIASES.items() if name.lower() in aliases), None
    )


def by_split(data_dir: Path, named: list[Path]) -> dict[str, Path]:
    sources = {}
    for split, aliases in SPLIT_ALIASES.items():
        matches = [entry for entry in named if split_of(split_name(entry)) == split]
        if len(matches) > 1:
            raise UserError(
                f"data folder {data_dir} has {len(matches)} {split} splits ({names(matches)}; "
                f"{', '.join(aliases)} all name the {split} split): keep one"
            )
        if matches:
            sources[split] = matches[0]
    if "train" not in sources:
        raise UserError(
            f"data folder {data_dir} has {names(named)} but no training split: add "
            f"{data_dir}/train.csv (or .tsv, .jsonl) or {data_dir}/train/<class>/*.txt"
        )
    return sources


def names(paths: list[Path]) -> str:
    return ", ".join(path.name for path in paths)


def read_rows(source: Path, text_column: str, label_column: str) -> list[Row]:
    if source.is_dir():
        return read_class_folders(source)
    return read_table(source, text_column, label_column)


def read_class_folders(folder: Path) -> list[Row]:
    """Every .txt document under folder/<class>/, labelled with its class folder's name (in
    Unicode NFC: macOS and Linux tools write accents differently)."""
    class_folders = [entry for entry in visible_entries(folder) if entry.is_dir()]
    if not class_folders:
        raise UserError(
            f"data folder {folder} has no class folders: expected {folder}/<class>/*.txt"
        )
    rows, empty, ignored = [], [], []
    for class_folder in class_folders:
        files = files_under(class_folder)
        documents = [path for path in files if path.suffix.lower() == ".txt"]
        if not documents:
            raise UserError(
                f"class folder {class_folder} has no .txt files: add one text per .txt file, or "
                "remove the folder"
            )
        ignored += [path for path in files if path.suffix.lower() != ".txt"]
        label = unicodedata.normalize("NFC", class_folder.name)
        for path in documents:
            text = read_document(path)
            if text.strip():
                rows.append((text, label))
            else:
                empty.append(path)
    if empty:
        log.warning("left out %d empty .txt file(s) under %s: %s", *quoted(folder, empty))
    if ignored:
        log.info("ignored %d file(s) under %s that are not .txt: %s", *quoted(folder, ignored))
    return rows


def quoted(folder: Path, paths: list[Path]) -> tuple[int, Path, str]:
    return len(paths), folder, listed([path.relative_to(folder).as_posix() for path in paths])


def files_under(folder: Path) -> list[Path]:
    """Every file under `folder` that is not hidden nor in a hidden folder, sorted."""
    files = []
    for parent, subfolders, file_names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not is_hidden_name(name)]
        files += [Path(parent) / name for name in file_names if not is_hidden_name(name)]
    return sorted(files)


def training_classes(source: Path, rows: list[Row]) -> list[str]:
    classes = sorted({label for _, label in rows})
    if not classes:
        raise UserError(f"training data {source} has no texts: add labelled texts")
    if len(classes) < 2:
        raise UserError(
            f"training data {source} has only one class ({classes[0]}): a classifier needs two "
            "or more"
        )
    return classes


def known_labels_only(source: Path, split: str, rows: list[Row], classes: list[str]) -> list[Row]:
    """The rows whose label training has: a class never trained on cannot be predicted."""
    known = set(classes)
    unknown = Counter(label for _, label in rows if label not in known)
    if unknown:
        counted = [f"{label} ({count})" for label, count in sorted(unknown.items())]
        log.warning(
            "left out %d %s row(s) of %s whose label the training split lacks: %s",
            sum(unknown.values()),
            SPLIT_NAMES[split],
            source,
            listed(counted),
        )
    return [row for row in rows if row[1] not in unknown]


def carve_validation(
    rows: list[Row], val_fraction: float, seed: int
) -> tuple[list[Row], list[Row]]:
    """Hold out round(n x val_fraction) of each class's n rows, at least one kept for training,
    chosen by the seed alone: the same rows carve the same way. Both keep the rows' order."""
    generator = np.random.default_rng(seed)
    members = defaultdict(list)
    for index, (_, label) in enumerate(rows):
        members[label].append(index)
    held_out = set()
    for label in sorted(members):
        indexes = members[label]
        count = min(round(len(indexes) * val_fraction), len(indexes) - 1)
        held_out.update(indexes[i] for i in generator.permutation(len(indexes))[:count])
    train = [row for index, row in enumerate(rows) if index not in held_out]
    val = [row for index, row in enumerate(rows) if index in held_out]
    return train, val


def warn_of_leakage(split: str, rows: list[Row], train: list[Row]) -> None:
    """Texts that are also training texts score what the model memorised."""
    trained = {text.strip() for text, _ in train}
    leaked = sum(text.strip() in trained for text, _ in rows)
    if leaked:
        log.warning(
            "%d of %d %s text(s) also appear in training: their scores flatter the model; "
            "remove the duplicates",
            leaked,
            len(rows),
            SPLIT_NAMES[split],
        )
