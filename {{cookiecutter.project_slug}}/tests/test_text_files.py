"""text_files: every layout and format of the user's own texts, and what it does with odd data."""

import csv
import json
import logging
import subprocess
import sys

import pytest

from {{ cookiecutter.project_slug }}.data.text_files import (
    read_text_splits,
    scored_whole,
    text_class_names,
)
from {{ cookiecutter.project_slug }}.errors import UserError

POSITIVE = [(f"a good film, number {index}", "pos") for index in range(10)]
NEGATIVE = [(f"a dull film, number {index}", "neg") for index in range(10)]
ROWS = POSITIVE + NEGATIVE
HELD_OUT = [("a fine film", "pos"), ("a poor film", "neg")]


@pytest.fixture(autouse=True)
def warnings_reach_caplog(monkeypatch):
    """A training run in this process stops the "train" logger's lines at its own handlers."""
    monkeypatch.setattr(logging.getLogger("train"), "propagate", True)


def write(path, content: str, encoding: str = "utf-8"):
    """Exactly these bytes (no line-end translation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode(encoding))
    return path


def table(rows, suffix: str, text: str = "text", label: str = "label") -> str:
    if suffix == ".jsonl":
        return "".join(json.dumps({text: t, label: lab}) + "\n" for t, lab in rows)
    delimiter = "\t" if suffix == ".tsv" else ","
    lines = [f"{text}{delimiter}{label}"] + [f'"{t}"{delimiter}{lab}' for t, lab in rows]
    return "\n".join(lines) + "\n"


def write_table(path, rows, **columns):
    return write(path, table(rows, path.suffix, **columns))


def tables(root, *names: str):
    for name in names:
        write_table(root / name, ROWS)
    return root


def files(root, *names: str):
    for name in names:
        write(root / name, "some words")
    return root


def write_documents(folder, rows) -> None:
    for index, (text, label) in enumerate(rows):
        write(folder / label / f"{index}.txt", text)


def read(data_dir, text="text", label="label", val_fraction=0.2, seed=0):
    return read_text_splits(data_dir, text, label, val_fraction, seed)


def by_label(rows) -> dict[str, int]:
    counts = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    return counts


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_split_files_in_every_format(tmp_path, suffix):
    write_table(tmp_path / f"train{suffix}", ROWS)
    write_table(tmp_path / f"val{suffix}", HELD_OUT)
    write_table(tmp_path / f"test{suffix}", HELD_OUT[::-1])
    data = read(tmp_path)
    assert data.class_names == ("neg", "pos")
    assert data.splits == {"train": ROWS, "val": HELD_OUT, "test": HELD_OUT[::-1]}
    assert not scored_whole(tmp_path)


@pytest.mark.parametrize("name", ["valid.csv", "Validation.csv", "DEV.csv"])
def test_val_file_names_are_matched_case_insensitively(tmp_path, name):
    write_table(tmp_path / "Train.csv", ROWS)
    write_table(tmp_path / name, HELD_OUT)
    assert read(tmp_path).splits["val"] == HELD_OUT


def test_train_and_test_files_carve_val_from_train_per_class(tmp_path):
    write_table(tmp_path / "train.csv", ROWS)
    write_table(tmp_path / "test.csv", HELD_OUT)
    splits = read(tmp_path, val_fraction=0.3).splits
    assert by_label(splits["val"]) == {"pos": 3, "neg": 3}
    assert sorted(splits["train"] + splits["val"]) == sorted(ROWS)
    assert splits["train"] == [row for row in ROWS if row not in splits["val"]]  # file order
    assert splits["test"] == HELD_OUT
    assert read(tmp_path, val_fraction=0.3).splits == splits
    assert read(tmp_path, val_fraction=0.3, seed=1).splits["val"] != splits["val"]


def test_carving_rounds_each_class_and_keeps_a_training_row(tmp_path):
    rows = [("alone", "solo"), ("one", "pair"), ("two", "pair")]
    rows += [(f"text {index}", "many") for index in range(5)]
    write_table(tmp_path / "data.csv", rows)
    val = read(tmp_path / "data.csv", val_fraction=0.9).splits["val"]
    # solo: its one row trains; pair: round(1.8) = 2 leaves none, so 1; many: round(4.5) = 4
    assert by_label(val) == {"pair": 1, "many": 4}
    assert read(tmp_path / "data.csv", val_fraction=0.1).splits["val"] == []


def test_carving_is_stable_given_the_same_rows(tmp_path):
    write_table(tmp_path / "a.csv", ROWS)
    write_table(tmp_path / "b.jsonl", ROWS)
    first, second = read(tmp_path / "a.csv", seed=7), read(tmp_path / "b.jsonl", seed=7)
    assert first.splits == second.splits
    assert by_label(first.splits["val"]) == {"pos": 2, "neg": 2}


def test_a_single_file_is_the_data_dir_or_alone_in_its_folder(tmp_path):
    path = write_table(tmp_path / "reviews.tsv", ROWS)
    files(tmp_path, ".DS_Store", "._reviews.tsv", "__MACOSX/._reviews.tsv")
    named, alone = read(path), read(tmp_path)
    assert named == alone and set(named.splits) == {"train", "val"}
    assert len(named.splits["train"]) == 16 and len(named.splits["val"]) == 4
    assert scored_whole(path) and scored_whole(tmp_path)


def test_split_folders_of_txt_documents(tmp_path, caplog):
    write_documents(tmp_path / "Train", ROWS)
    write_documents(tmp_path / "VALID", HELD_OUT)
    write_documents(tmp_path / "test", HELD_OUT)
    write(tmp_path / "Train" / "pos" / ".hidden.txt", "not a document")
    write(tmp_path / "Train" / "pos" / ".ipynb_checkpoints" / "0-checkpoint.txt", "nor this")
    write(tmp_path / "__MACOSX" / "Train" / "pos" / "._0.txt", "nor this")
    write(tmp_path / "Train" / "neg" / "notes.md", "ignored")
    with caplog.at_level(logging.INFO, logger="train.data"):
        data = read(tmp_path)
    assert f"ignored 1 file(s) under {tmp_path / 'Train'} that are not .txt: neg/notes.md" in (
        caplog.text
    )
    assert data.class_names == ("neg", "pos")
    assert sorted(data.splits["train"]) == sorted(ROWS)
    assert sorted(data.splits["val"]) == sorted(data.splits["test"]) == sorted(HELD_OUT)
    assert not scored_whole(tmp_path)


def test_class_folders_alone_are_carved(tmp_path):
    write_documents(tmp_path, ROWS)
    data = read(tmp_path, val_fraction=0.5)
    assert by_label(data.splits["val"]) == {"pos": 5, "neg": 5}
    assert sorted(data.splits["train"] + data.splits["val"]) == sorted(ROWS)
    assert scored_whole(tmp_path)
    assert text_class_names(tmp_path, "text", "label") == ["neg", "pos"]


def test_byte_order_mark_and_windows_line_ends(tmp_path):
    write(tmp_path / "train.csv", "\ufefftext,label\r\ngood,pos\r\nbad,neg\r\n")
    write(tmp_path / "val.jsonl", '\ufeff{"text": "fine", "label": "pos"}\r\n\r\n')
    write(tmp_path / "test.tsv", "\ufefftext\tlabel\r\nawful\tneg\r\n")
    data = read(tmp_path)
    assert data.splits == {
        "train": [("good", "pos"), ("bad", "neg")],
        "val": [("fine", "pos")],
        "test": [("awful", "neg")],
    }


def test_a_quoted_csv_field_may_span_lines(tmp_path):
    write(tmp_path / "train.csv", 'text,label\n"first line\nsecond, with a comma",pos\nbad, neg\n')
    write_table(tmp_path / "val.csv", HELD_OUT)
    first = ("first line\nsecond, with a comma", "pos")
    assert read(tmp_path).splits["train"] == [first, ("bad", "neg")]  # labels stripped


def test_tsv_with_other_column_names(tmp_path):
    write_table(tmp_path / "train.tsv", ROWS, text="sentence", label="sentiment")
    write_table(tmp_path / "dev.tsv", HELD_OUT, text="sentence", label="sentiment")
    data = read(tmp_path, text="sentence", label="sentiment")
    assert data.splits["val"] == HELD_OUT
    assert text_class_names(tmp_path, "sentence", "sentiment") == ["neg", "pos"]


def test_jsonl_numeric_labels_become_strings(tmp_path):
    lines = [{"body": text, "stars": n % 2, "id": n} for n, (text, _) in enumerate(ROWS)]
    write(tmp_path / "train.jsonl", "\n\n".join(json.dumps(line) for line in lines))
    data = read(tmp_path, text="body", label="stars")
    assert data.class_names == ("0", "1")
    labels = dict(data.splits["train"] + data.splits["val"])
    assert (labels[ROWS[0][0]], labels[ROWS[1][0]]) == ("0", "1")


def test_empty_texts_are_left_out_and_counted(tmp_path, caplog):
    rows = ROWS + [("", "pos"), ("   ", "neg")]
    write_table(tmp_path / "train.csv", rows)
    write(tmp_path / "val.csv", "text,label\nfine,pos\n,neg\n")
    with caplog.at_level(logging.WARNING, logger="train.data"):
        data = read(tmp_path)
    assert data.splits["train"] == ROWS and data.splits["val"] == [("fine", "pos")]
    assert f"left out 2 row(s) of {tmp_path / 'train.csv'} with an empty text" in caplog.text
    assert f"left out 1 row(s) of {tmp_path / 'val.csv'} with an empty text" in caplog.text


def test_empty_txt_documents_are_left_out_and_counted(tmp_path, caplog):
    write_documents(tmp_path, ROWS)
    write(tmp_path / "pos" / "blank.txt", " \n")
    with caplog.at_level(logging.WARNING, logger="train.data"):
        data = read(tmp_path)
    assert len(data.splits["train"]) + len(data.splits["val"]) == len(ROWS)
    assert f"left out 1 empty .txt file(s) under {tmp_path}: pos/blank.txt" in caplog.text


def test_duplicates_are_kept_and_leakage_is_counted(tmp_path, caplog):
    write_table(tmp_path / "train.csv", ROWS + ROWS[:2])
    write_table(tmp_path / "val.csv", HELD_OUT + ROWS[:3])
    with caplog.at_level(logging.WARNING, logger="train.data"):
        data = read(tmp_path)
    assert len(data.splits["train"]) == 22 and len(data.splits["val"]) == 5
    (line,) = warnings_of(caplog)
    assert line.startswith("3 of 5 validation text(s) also appear in training")


def test_val_and_test_labels_training_lacks_are_left_out(tmp_path, caplog):
    write_table(tmp_path / "train.jsonl", ROWS)
    write_table(tmp_path / "val.jsonl", HELD_OUT + [("meh", "neutral"), ("so-so", "neutral")])
    write_table(tmp_path / "test.jsonl", HELD_OUT + [("?", "spam")])
    with caplog.at_level(logging.WARNING, logger="train.data"):
        data = read(tmp_path)
    assert data.splits["val"] == data.splits["test"] == HELD_OUT
    assert data.class_names == ("neg", "pos")
    val_line, test_line = warnings_of(caplog)
    assert val_line.startswith("left out 2 validation row(s) of") and "neutral (2)" in val_line
    assert test_line.startswith("left out 1 test row(s) of") and test_line.endswith("spam (1)")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_text_over_a_million_characters_is_refused_with_its_line(tmp_path, suffix):
    csv.field_size_limit(131_072)  # csv's default: the reader raises it itself
    path = write_table(tmp_path / f"train{suffix}", ROWS[:2] + [("x" * 1_000_001, "pos")])
    words = r"line (3|4) holds a text of 1,000,001 characters"
    with pytest.raises(UserError, match=words) as error:
        read(tmp_path)
    assert str(path) in str(error.value)


def test_a_quote_left_open_is_named_by_the_length_check(tmp_path):
    lines = ['"an open quote,pos'] + [f"{'y' * 999},neg" for _ in range(1100)]
    write(tmp_path / "data.csv", "text,label\n" + "\n".join(lines))
    with pytest.raises(UserError, match=r"line 2 holds a text of .*\(is a quote left open\?\)"):
        read(tmp_path)


def test_the_module_needs_no_torch():
    module = "{{ cookiecutter.project_slug }}.data.text_files"
    code = f"import sys, {module}; assert 'torch' not in sys.modules"
    # -X utf8: an interpreter option, so a fresh interpreter even under a launcher that
    # preloads torch.
    subprocess.run([sys.executable, "-X", "utf8", "-c", code], check=True)


def test_class_names_come_from_the_training_rows_without_carving(tmp_path):
    write_table(tmp_path / "train.csv", ROWS + [("one", "rare")])
    write_table(tmp_path / "test.csv", [("other", "unseen")])
    assert text_class_names(tmp_path, "text", "label") == ["neg", "pos", "rare"]
    assert read(tmp_path).class_names == ("neg", "pos", "rare")


def case(name: str, make, *words: str):
    """`make` writes the data under a folder and returns the --data-dir; the message holds the
    words."""
    return pytest.param(make, words, id=name)


LATIN_1 = "text,label\nok,pos\ncafé,neg\n"
BAD_DATA = [
    case("missing folder", lambda root: root / "nothing", "does not exist", "--data-dir"),
    case("missing file", lambda root: root / "train.csv", "does not exist", "--data-dir"),
    case("empty file", lambda root: write(root / "train.csv", "\n"), "train.csv is empty"),
    case("header only", lambda root: write(root / "t.csv", "text,label\n"), "no rows under"),
    case(
        "no text column",
        lambda root: write(root / "t.csv", "review,label\nok,pos\n"),
        "no text column 'text'",
        "columns found: 'review', 'label'",
        "--text-column",
    ),
    case(
        "no label key",
        lambda root: write(root / "t.jsonl", '{"text": "ok", "y": 1}\n'),
        "line 1 has no label key 'label'",
        "keys found: 'text', 'y'",
        "--label-column",
    ),
    case(
        "not UTF-8",
        lambda root: write(root / "t.csv", LATIN_1, "latin-1"),
        "t.csv is not UTF-8 text: line 3",
        "save the file as UTF-8",
    ),
    case(
        "one class",
        lambda root: write_table(root / "t.csv", POSITIVE),
        "has only one class (pos)",
        "two or more",
    ),
    case(
        "not an object",
        lambda root: write(root / "t.jsonl", '{"text": "a", "label": 1}\n[1]\n'),
        "line 2 is a JSON list, not an object",
    ),
    case(
        "not JSON",
        lambda root: write(root / "t.jsonl", '\n{"text": "a", "label": 1\n'),
        "line 2 is not JSON",
    ),
    case(
        "unknown extension",
        lambda root: write(root / "data.xlsx", "x"),
        "data.xlsx is not a .csv, .tsv or .jsonl file",
    ),
    case(
        "two val files",
        lambda root: tables(root, "train.csv", "val.csv", "validation.csv"),
        "2 val splits (val.csv, validation.csv",
        "keep one",
    ),
    case(
        "no train file",
        lambda root: tables(root, "val.csv"),
        "has val.csv but no training split",
        "train.csv",
    ),
    case(
        "short row",
        lambda root: write(root / "t.csv", "text,label\nok,pos\nshort\n"),
        "line 3 has 1 field(s) where the header has 2",
    ),
    case(
        "no txt files",
        lambda root: files(root, "pos/a.md", "neg/b.txt"),
        "class folder",
        "has no .txt files",
    ),
    case(
        "UTF-16",
        lambda root: write(root / "t.tsv", "text\tlabel\n", "utf-16"),
        "t.tsv is not UTF-8 text (it is UTF-16): line 1",
    ),
    case(
        "a list for a text",
        lambda root: write(root / "t.jsonl", '{"text": ["a"], "label": 1}\n'),
        "line 1: 'text' holds a JSON list",
    ),
    case(
        "split and class folders",
        lambda root: files(root, "train/pos/a.txt", "neg/b.txt"),
        "mixes split folders (train) with other folders (neg)",
    ),
    case(
        "several tables",
        lambda root: tables(root, "a.csv", "b.csv"),
        "holds 2 table files (a.csv, b.csv)",
        "train.csv",
    ),
]


@pytest.mark.parametrize("make, words", BAD_DATA)
def test_bad_data_is_one_line_naming_what_to_do(tmp_path, make, words):
    data_dir = make(tmp_path)
    with pytest.raises(UserError) as error:
        read(data_dir)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message
