"""Mistakes in texts and tokenizer flags: one line naming the problem and the fix, exit code 2,
no traceback, no run folder made or changed. The quick tests call the train command in this
process; the slow ones run it as a user does, one process per mistake."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from tokenizers import Tokenizer, models

from {{ cookiecutter.project_slug }}.train import main as train_main

from conftest import QUICK

TRAIN = [sys.executable, "-m", "{{ cookiecutter.project_slug }}.train"]
LATIN_1 = "text,label\nguten Tag,de\ncafé,fr\n".encode("latin-1")


def train_argv(output_dir, *flags: str) -> list[str]:
    return [*QUICK, "--output-dir", str(output_dir), "--name", "run", *flags]


def exit_code(argv: list[str]) -> int:
    """train's exit code, whether main returns it or argparse exits with it."""
    try:
        return train_main(argv)
    except SystemExit as stop:
        return stop.code


def only_error(stderr: str) -> str:
    """The error line, checked to be the one error, the last line, and without a traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr[-2000:]
    return errors[0]


def run_side_by_side(argvs: dict[str, list[str]]) -> dict[str, str]:
    """Each train command's error line, run as its own process (exit code 2 checked); side by
    side, as each spends seconds loading torch before it can refuse."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = {
            name: pool.submit(
                subprocess.run, [*TRAIN, *argv], capture_output=True, text=True, timeout=300
            )
            for name, argv in argvs.items()
        }
    results = {name: future.result() for name, future in running.items()}
    for result in results.values():
        assert result.returncode == 2, result.stderr[-2000:]
    return {name: only_error(result.stderr) for name, result in results.items()}


def table(content: str | bytes, name: str = "texts.csv"):
    """`make` for a --data-dir file holding `content`."""

    def make(root) -> list[str]:
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["--dataset", "text_files", "--data-dir", str(path)]

    return make


def tokenizer_file(content: str):
    def make(root) -> list[str]:
        (root / "tokenizer.json").write_text(content)
        return ["--tokenizer", str(root / "tokenizer.json")]

    return make


def words_at_id_0() -> str:
    """A tokenizer whose id 0 is a word: batches, padded with id 0, would pad with it."""
    vocabulary = {"hello": 0, "[UNK]": 1, "world": 2}
    return Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]")).to_str()


def case(name: str, make, *words: str):
    """`make(root)` writes what the case needs under root and returns the train flags; the error
    line holds the words."""
    return pytest.param(name, make, words, id=name)


CASES = [
    case("empty file", table(""), "texts.csv is empty", "header row"),
    case(
        "no text column",
        table("review,label\nok,en\nja,de\n"),
        "has no text column 'text'",
        "--text-column",
    ),
    case(
        "no label column",
        table("text,language\nok,en\nja,de\n"),
        "has no label column 'label'",
        "--label-column",
    ),
    case(
        "one class",
        table("text,label\ngood day,en\ngood night,en\n"),
        "has only one class (en)",
        "two or more",
    ),
    case(
        "not UTF-8",
        table(LATIN_1),
        "texts.csv is not UTF-8 text: line 3 has the byte 0xe9",
        "save the file as UTF-8",
    ),
    case(
        "a 10 MB line",
        table(f"text,label\n{'x' * 10_000_000},en\nguten Tag,de\n"),
        "line 2 holds a text of 10,000,000 characters",
        "split the text",
    ),
    case("no data dir", lambda root: ["--dataset", "text_files"], "needs --data-dir"),
    case(
        "missing data dir",
        lambda root: ["--dataset", "text_files", "--data-dir", str(root / "nothing.csv")],
        "does not exist",
        "--data-dir",
    ),
    case(
        "max length 0",
        lambda root: ["--max-length", "0"],
        "--max-length: must be at least 2",
    ),
    case(
        "vocabulary below 300",
        lambda root: ["--vocab-size", "299"],
        "--vocab-size: must be at least 300",
    ),
    case(
        "broken tokenizer",
        tokenizer_file('{"version": "1.0", "model": '),
        "cannot read tokenizer",
        "tokenizer.json saved by Hugging Face tokenizers",
    ),
    case(
        "tokenizer without padding at id 0",
        tokenizer_file(words_at_id_0()),
        "has 'hello' at id 0",
        "[PAD]",
    ),
]


@pytest.mark.parametrize("name, make, words", CASES)
def test_a_mistake_is_one_line_and_starts_no_run(tmp_path, capsys, name, make, words):
    assert exit_code(train_argv(tmp_path / "runs", *make(tmp_path))) == 2
    error = only_error(capsys.readouterr().err)
    for word in words:
        assert word in error, error
    assert not (tmp_path / "runs" / "run").exists()


def test_the_command_prints_the_one_line_and_exits_with_2(tmp_path):
    flags = table(LATIN_1)(tmp_path)
    (error,) = run_side_by_side({"not UTF-8": train_argv(tmp_path / "runs", *flags)}).values()
    assert "is not UTF-8 text" in error and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_command_refuses_every_mistake_alike(tmp_path):
    argvs, run_dirs, expected = {}, {}, {}
    for name, make, words in (param.values for param in CASES):
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        argvs[name] = train_argv(folder / "runs", *make(folder))
        run_dirs[name], expected[name] = folder / "runs" / "run", words
    for name, error in run_side_by_side(argvs).items():
        assert all(word in error for word in expected[name]), error
        assert not run_dirs[name].exists()


@pytest.mark.slow
def test_a_resume_with_another_tokenizer_or_vocabulary_is_refused(train, tmp_path):
    run_dir = train()
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    other = tmp_path / "other.json"
    other.write_text(words_at_id_0().replace('"hello"', '"[PAD]"'))
    resume = ["--epochs", "2", "--resume", "auto"]
    # One after the other: two resumes of one run at once would meet its lock instead.
    attempts = {
        "tokenizer": train_argv(run_dir.parent, *resume, "--tokenizer", str(other)),
        "vocabulary": train_argv(run_dir.parent, *resume, "--vocab-size", "400"),
    }
    errors = {name: run_side_by_side({name: argv})[name] for name, argv in attempts.items()}
    assert "was trained with no --tokenizer: resume with the same flags" in errors["tokenizer"]
    assert "was trained with --vocab-size 300: resume with the same flags" in errors["vocabulary"]
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert after.keys() == before.keys()
    assert all(after[name] == before[name] for name in before if name != "train.log")
