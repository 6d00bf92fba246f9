"""The template's Python is Python: options pick whole modules where they can, and elsewhere
whole statements (imports, a function, a method, a block of calls), so the sources stay
lintable."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from options import SLUG, TEMPLATE_DIR

PROJECT_DIR = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
CONTROL_TAG = re.compile(r"{%-?\s*(\w+)")
TAG_LINE = re.compile(r"{%-?\s*\w+[^%]*?-?%}")  # a tag alone on its line, at its start
# Whole-block conditionals only; two tasks (image and text) share the engine and its tests,
# and the image-only parts inside shared modules (Grad-CAM's flags, --channels-last) are
# rendered for image projects alone.
MAX_CONTROL_TAGS = 120
# A line ending so is continued on the next one; a line starting so continues the one before.
CONTINUED = ("(", "[", "{", ",", "\\", "=", "+", "-", "*", "/", " and", " or", " not")
CONTINUING = (")", "]", "}", ".", ",", "+", "-", "*", "/", "and ", "or ")
SLUG_FOLDER = "{{cookiecutter.project_slug}}"
IMPORTED_SLUG = re.compile(r"^(from|import) \{\{ cookiecutter\.project_slug \}\}", re.MULTILINE)


def template_python_files() -> list[Path]:
    return sorted([*PROJECT_DIR.rglob("*.py"), *(TEMPLATE_DIR / "hooks").glob("*.py")])


def control_tags(text: str) -> list[tuple[int, str]]:
    """(line number, keyword) of every {% ... %} tag."""
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in CONTROL_TAG.finditer(text)
    ]


def code_lines(lines: list[str]) -> list[str]:
    """The lines that hold code: neither blank nor a control tag."""
    return [line for line in lines if line.strip() and not TAG_LINE.fullmatch(line)]


def test_few_control_tags_each_between_whole_statements():
    tags = {path: control_tags(path.read_text()) for path in template_python_files()}
    total = sum(len(found) for found in tags.values())
    print(f"Jinja control tags in template .py files: {total}")
    assert total <= MAX_CONTROL_TAGS, {str(path): len(found) for path, found in tags.items()}
    for path, found in tags.items():
        lines = path.read_text().splitlines()
        for number, keyword in found:
            where = f"{path.relative_to(TEMPLATE_DIR)}:{number}: {{% {keyword} %}}"
            assert TAG_LINE.fullmatch(lines[number - 1]), f"{where} shares its line"
            before = code_lines(lines[: number - 1])[-1:]
            after = code_lines(lines[number:])[:1]
            continued = before and before[0].rstrip().endswith(CONTINUED)
            continuing = after and after[0].lstrip().startswith(CONTINUING)
            assert not (continued or continuing), f"{where} inside a statement"


def test_sources_without_control_tags_parse_and_pass_ruff(render, tmp_path):
    """Checked as stored; only the slug in generated tests' import lines is filled in, since
    `from <slug>.config import ...` cannot be written any other way. (The template's own ruff
    run covers the hooks; the renders' ruff runs cover the modules with tags, which stand here
    as empty modules, so that imports of them sort as in a render.)"""
    copies = tmp_path / SLUG
    checked = 0
    for path in template_python_files():
        text = path.read_text()
        tagged = bool(control_tags(text))
        if not tagged:
            text = IMPORTED_SLUG.sub(rf"\1 {SLUG}", text)
            ast.parse(text, filename=str(path))
        if path.is_relative_to(PROJECT_DIR):
            relative = str(path.relative_to(PROJECT_DIR)).replace(SLUG_FOLDER, SLUG)
            (copies / relative).parent.mkdir(parents=True, exist_ok=True)
            (copies / relative).write_text("" if tagged else text)
            checked += not tagged
    shutil.copy(render() / "pyproject.toml", copies)  # the generated project's ruff settings
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=copies,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert checked >= 40
