"""Size of the generated package, for the all-options and the minimal combination: code lines
(not counting blank lines, comments and docstrings), modules, the largest module and the widest
folder (the most modules side by side), with any module over 300 code lines or folder over 12
modules flagged.

    .venv/bin/python benchmarks/code_size.py
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from rendered_project import ROOT, rendered_folder

SCRATCH = ROOT / ".scratch" / "benchmarks" / "size"
MINIMAL = {"logger": "none", "mixed_precision": "no", "multi_gpu": "none", "onnx_export": "no"}
# Optional parts that the minimal combination leaves out where the template offers the switch.
MINIMAL_IF_OFFERED = {"sweeps": "no", "insight": "no"}
MODULE_LIMIT = 300  # code lines
FOLDER_LIMIT = 12  # modules


def combinations() -> dict[str, dict[str, str]]:
    offered = json.loads((ROOT / "cookiecutter.json").read_text())
    optional = {key: value for key, value in MINIMAL_IF_OFFERED.items() if key in offered}
    minimal = {**MINIMAL, **optional}
    text = {"task": "text_classification"}
    return {
        "all options": {},
        "minimal": minimal,
        "text, all options": text,
        "text, minimal": {**minimal, **text},
    }


def docstring_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(path: Path) -> int:
    text = path.read_text()
    skipped = docstring_lines(ast.parse(text))
    return sum(
        1
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and number not in skipped
    )


def render(name: str, answers: dict) -> Path:
    output = SCRATCH / name.replace(" ", "-")
    shutil.rmtree(output, ignore_errors=True)
    (SCRATCH / "tmp").mkdir(parents=True, exist_ok=True)
    extra = [f"{key}={value}" for key, value in {"init_git": "no", **answers}.items()]
    subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(output), *extra],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(SCRATCH / "tmp")},
    )
    project = rendered_folder(output)
    return project / "src" / project.name


def folder_name(module: str) -> str:
    """A module's folder, from the package root: 'training/', or '.' for the root itself."""
    parent = Path(module).parent
    return "." if parent == Path(".") else f"{parent}/"


def row(name: str, package: Path) -> list[str]:
    sizes = {
        path.relative_to(package).as_posix(): code_lines(path)
        for path in sorted(package.rglob("*.py"))
    }
    folders = Counter(folder_name(module) for module in sizes)
    largest = max(sizes, key=sizes.get)
    widest = max(folders, key=folders.get)
    flagged = [f"{module} {lines}" for module, lines in sizes.items() if lines > MODULE_LIMIT]
    flagged += [
        f"{folder} {count} modules" for folder, count in folders.items() if count > FOLDER_LIMIT
    ]
    return [
        name,
        str(sum(sizes.values())),
        str(len(sizes)),
        f"{largest} {sizes[largest]}",
        f"{widest} {folders[widest]}",
        ", ".join(flagged) or "none",
    ]


def main() -> None:
    header = ["combination", "code lines", "modules", "largest module (code lines)"]
    header += ["widest folder (modules)", f"over {MODULE_LIMIT} lines / {FOLDER_LIMIT} modules"]
    rows = [row(name, render(name, answers)) for name, answers in combinations().items()]
    align = ["---", "---:", "---:", "---", "---", "---"]
    for cells in [header, align, *rows]:
        print("| " + " | ".join(cells) + " |")
    for name, answers in combinations().items():
        if answers:
            print(f"{name}: {' '.join(f'{key}={value}' for key, value in answers.items())}")


if __name__ == "__main__":
    main()
