"""Size of the generated package: lines of code, not counting blank lines, comments and
docstrings, for the all-options and the minimal combination.

    .venv/bin/python benchmarks/code_size.py
"""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rendered_project import PACKAGE, ROOT

SCRATCH = ROOT / ".scratch" / "benchmarks" / "size"
COMBINATIONS = {
    "all options": {},
    "minimal": {
        "logger": "none",
        "mixed_precision": "no",
        "multi_gpu": "none",
        "onnx_export": "no",
    },
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
    return output / PACKAGE / "src" / PACKAGE


def main() -> None:
    print("| combination | modules | lines of code | largest modules |")
    print("| --- | ---: | ---: | --- |")
    for name, answers in COMBINATIONS.items():
        package = render(name, answers)
        sizes = {str(path.relative_to(package)): code_lines(path) for path in package.rglob("*.py")}
        largest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
        biggest = ", ".join(f"{module} {lines}" for module, lines in largest)
        print(f"| {name} | {len(sizes)} | {sum(sizes.values())} | {biggest} |")


if __name__ == "__main__":
    main()
