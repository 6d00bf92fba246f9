"""One file of labelled texts read into (text, label) rows: a CSV or TSV table with a header, a
JSONL file of one object per line, or a single .txt document.

Files are decoded as UTF-8 (a byte-order mark is fine, as are Windows line ends). Labels are
strings, stripped of surrounding spaces (a JSON number becomes its str()). Rows with an empty or
blank text or label are left out, counted in one warning per file.
"""

import csv
import io
import json
import logging
from pathlib import Path

from ..errors import UserError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")
MAX_TEXT_CHARS = 1_000_000
# csv's own limit (131,072 characters a field) would stop a long text with csv's words, before
# the length check below names its file and line; 2**31 - 1 fits a C long on every system.
CSV_FIELD_LIMIT = 2**31 - 1
LISTED = 5  # line numbers or names quoted in one log or error line

Row = tuple[str, str]
Record = tuple[int, str, str]  # (line number, text, label)
log = logging.getLogger("train.data")


def read_table(path: Path, text_column: str, label_column: str) -> list[Row]:
    content = decoded(path)
    if not content.strip():
        raise UserError(f"{path} is empty: give it a header row and one row per text")
    if path.suffix.lower() == ".jsonl":
        records = jsonl_records(path, content, text_column, label_column)
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        records = delimited_records(path, content, delimiter, text_column, label_column)
    if not records:
        raise UserError(f"{path} has no rows under its header: add one row per text")
    return kept_rows(path, records)


def read_document(path: Path) -> str:
    """A .txt file's whole text: one document."""
    text = decoded(path)
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(
            f"{path} holds {len(text):,} characters, over the {MAX_TEXT_CHARS:,} one text may "
            "have: split it into several documents"
        )
    return text


def decoded(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}): check the file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        utf16 = " (it is UTF-16)" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else ""
        raise UserError(
            f"{path} is not UTF-8 text{utf16}: line {line} has the byte "
            f"0x{data[error.start]:02x}; save the file as UTF-8"
        ) from None


def delimited_records(
    path: Path, content: str, delimiter: str, text_column: str, label_column: str
) -> list[Record]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
        columns = [
            column_index(path, header, column, kind)
            for column, kind in ((text_column, "text"), (label_column, "label"))
        ]
        records, line = [], reader.line_num + 1
        for fields in reader:
            if fields:  # a blank line
                records.append(record_of(path, line, fields, columns, len(header)))
            line = reader.line_num + 1
    except csv.Error as error:
        raise UserError(
            f"{path} line {reader.line_num} is not valid {path.suffix[1:].upper()} ({error}): "
            "fix the line"
        ) from None
    return records


def column_index(path: Path, header: list[str], column: str, kind: str) -> int:
    if column not in header:
        raise UserError(missing_column(path, "", column, kind, "columns", header))
    return header.index(column)


def missing_column(path: Path, where: str, column: str, kind: str, found: str, names) -> str:
    shown = ", ".join(repr(name) for name in names) or "none"
    return (
        f"{path}{where} has no {kind} {found[:-1]} {column!r} ({found} found: {shown}): pass "
        f"--{kind}-column with the one that holds the {kind}s"
    )


def record_of(path: Path, line: int, fields: list[str], columns: list[int], width: int) -> Record:
    for field in fields:
        check_length(path, line, field)
    text_index, label_index = columns
    if max(columns) >= len(fields):
        raise UserError(
            f"{path} line {line} has {len(fields)} field(s) where the header has {width}: "
            "quote a text that holds the delimiter, or fix the line"
        )
    return line, fields[text_index], fields[label_index]


def jsonl_records(path: Path, content: str, text_column: str, label_column: str) -> list[Record]:
    records = []
    for line, source in enumerate(content.split("\n"), start=1):
        if not source.strip():
            continue
        record = json_object(path, line, source)
        values = []
        for key, kind in ((text_column, "text"), (label_column, "label")):
            if key not in record:
                raise UserError(missing_column(path, f" line {line}", key, kind, "keys", record))
            values.append(json_string(path, line, key, record[key]))
        check_length(path, line, values[0])
        records.append((line, *values))
    return records


def json_object(path: Path, line: int, source: str) -> dict:
    try:
        record = json.loads(source)
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path} line {line} is not JSON ({error.msg}): JSONL holds one JSON object per line"
        ) from None
    if not isinstance(record, dict):
        raise UserError(
            f"{path} line {line} is a JSON {type(record).__name__}, not an object: JSONL holds "
            "one JSON object per line"
        )
    return record


def json_string(path: Path, line: int, key: str, value) -> str:
    if isinstance(value, dict | list):
        raise UserError(
            f"{path} line {line}: {key!r} holds a JSON {type(value).__name__}: give a string"
        )
    return "" if value is None else str(value)


def kept_rows(path: Path, records: list[Record]) -> list[Row]:
    """The rows with a text and a label."""
    rows, left_out = [], []
    for line, text, label in records:
        if text.strip() and label.strip():
            rows.append((text, label.strip()))
        else:
            left_out.append(line)
    if left_out:
        log.warning(
            "left out %d row(s) of %s with an empty text or label (line %s)",
            len(left_out),
            path,
            listed(left_out),
        )
    return rows


def check_length(path: Path, line: int, text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        open_quote = "" if path.suffix.lower() == ".jsonl" else " (is a quote left open?)"
        raise UserError(
            f"{path} line {line} holds a text of {len(text):,} characters, over the "
            f"{MAX_TEXT_CHARS:,} one text may have{open_quote}: split the text, or fix the line"
        )


def listed(items: list) -> str:
    shown = ", ".join(str(item) for item in items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")
