"""A render's ARCHITECTURE.md describes the package that render has: it names every folder and
module there, no module that is not there (an unchosen option's modules are left out), and no
function, class or attribute the code does not have; and the package keeps its one rule,
imports only downward through the layers the document lists."""

import ast
import re
from pathlib import Path

import pytest

from options import SLUG

MINIMAL = {"logger": "none", "mixed_precision": "no", "multi_gpu": "none", "onnx_export": "no"}
MINIMAL |= {"sweeps": "no", "insight": "no"}
TEXT = {"task": "text_classification"}
RENDERS = {"default": {}, "minimal": MINIMAL, "text": TEXT, "text-minimal": MINIMAL | TEXT}
# A module as the document names it: by its path in the package (`training/fit.py`), or by its
# file name alone (`fit.py`) where the text around it says which folder.
MODULE = re.compile(r"(?<![\w./-])((?:\w+/)*\w+\.py)\b")
CODE_SPAN = re.compile(r"`([^`]+)`")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
ARGUMENTS = re.compile(r"\(.*\)", re.DOTALL)  # a call's arguments: names of the reader's choosing
# Spans that are not code names: files, folders, flags, shell lines, literals, placeholders.
NOT_CODE = re.compile(r"\s|[\"'<*]|^[-.]|/$|\.(py|md|pt|jsonl|yaml|png|onnx|log|sbatch)$")


def documented(answers: dict, render) -> tuple[str, Path]:
    project = render(**answers)
    return (project / "ARCHITECTURE.md").read_text(), project / "src" / SLUG


def named_modules(text: str) -> set[str]:
    return set(MODULE.findall(text))


def modules_with_code(package: Path) -> set[str]:
    """Every module's path in the package; an empty __init__.py is named by its folder."""
    return {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name != "__init__.py" or path.read_text().strip()
    }


def folders(package: Path) -> set[str]:
    return {
        f"{path.relative_to(package).as_posix()}/"
        for path in package.rglob("*")
        if path.is_dir() and path.name != "__pycache__"
    }


@pytest.mark.parametrize("answers", RENDERS.values(), ids=RENDERS.keys())
def test_names_every_folder_and_module_by_its_path(render, answers):
    text, package = documented(answers, render)
    unnamed = sorted(folder for folder in folders(package) if folder not in text)
    unnamed += sorted(modules_with_code(package) - named_modules(text))
    assert unnamed == [], f"ARCHITECTURE.md does not name {unnamed}"


@pytest.mark.parametrize("answers", RENDERS.values(), ids=RENDERS.keys())
def test_names_no_module_the_render_lacks(render, answers):
    text, package = documented(answers, render)
    file_names = {path.name for path in package.rglob("*.py")}
    lacking = sorted(
        name
        for name in named_modules(text)
        if not ((package / name).is_file() if "/" in name else name in file_names)
    )
    assert lacking == [], f"ARCHITECTURE.md names {lacking}, which this render lacks"


def code_names(text: str) -> set[str]:
    """Each identifier of the document's code spans (`training/loop.to_device`,
    `Precision.autocast()`), its path's folders and file names left out."""
    names = set()
    for span in CODE_SPAN.findall(text):
        span = ARGUMENTS.sub("", span)
        if NOT_CODE.search(span):
            continue
        names |= set(IDENTIFIER.findall(span.rsplit("/", 1)[-1]))
    return names


@pytest.mark.parametrize("answers", RENDERS.values(), ids=RENDERS.keys())
def test_names_only_code_the_render_has(render, answers):
    text, package = documented(answers, render)
    source = "\n".join(path.read_text() for path in package.rglob("*.py"))
    unknown = sorted(name for name in code_names(text) if not re.search(rf"\b{name}\b", source))
    assert unknown == [], f"ARCHITECTURE.md names {unknown}, which this render's code lacks"


# The layers ARCHITECTURE.md lists, from the bottom up; the commands (top-level modules) come
# last. A module imports from its own layer and the ones before it.
LAYERS = (
    {"errors", "config"},
    {"data", "datasets", "models", "tasks"},
    {"runs"},
    {"loggers"},
    {"training"},
    {"insight"},
    {"sweeps"},
)
# The documented exception: config/ reads the torch-free registries' facts.
REGISTRIES = {("datasets",), ("models",), ("tasks",)}


def layer(unit: str) -> int:
    return next((index for index, units in enumerate(LAYERS) if unit in units), len(LAYERS))


def imported_modules(path: Path, package: Path):
    """(the importing unit, each module path it imports from within the package)."""
    parts = path.relative_to(package).with_suffix("").parts
    here = parts[:-1]  # the package a module (or an __init__) sits in
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = here[: len(here) - (node.level - 1)]
            target = base + tuple(node.module.split(".")) if node.module else base
            yield (parts[0], target or tuple(alias.name for alias in node.names[:1]))


@pytest.mark.parametrize("answers", RENDERS.values(), ids=RENDERS.keys())
def test_imports_go_only_downward(render, answers):
    _, package = documented(answers, render)
    upward = [
        f"{path.relative_to(package)} imports {'.'.join(target)}"
        for path in sorted(package.rglob("*.py"))
        for unit, target in imported_modules(path, package)
        if layer(target[0]) > layer(unit) and not (unit == "config" and target in REGISTRIES)
    ]
    assert upward == []
