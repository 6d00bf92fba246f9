"""Validate the answers before anything is written.

Every answer reaches this script as JSON data, never as Python source, so quotes,
backslashes, newlines or template syntax in an answer cannot change what runs here.
"""

import json
import keyword
import re
import sys

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

# Modules a generated project imports (or that its tooling imports by name): a package
# with one of these names would shadow the real one.
SHADOWED_MODULES = {
    "conftest",
    "matplotlib",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "PIL",
    "pytest",
    "setuptools",
    "sklearn",
    "src",
    "tensorboard",
    "test",
    "tests",
    "torch",
    "torchinfo",
    "torchmetrics",
    "torchvision",
    "tqdm",
    "wandb",
    "yaml",
}
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
# PEP 440 public version identifiers (epoch, release, pre, post, dev).
VERSION = re.compile(r"^([0-9]+!)?[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")
PACKAGE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def slug_problem(slug: str) -> str | None:
    if not PACKAGE_NAME.match(slug):
        return (
            f"project_slug {slug!r} is not a valid package name: use lowercase letters, "
            "digits and underscores, not starting with a digit (e.g. 'my_project')"
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        return (
            f"project_slug {slug!r} is a Python keyword: "
            f"choose another name (e.g. '{slug}_project')"
        )
    if slug in SHADOWED_MODULES or slug in sys.stdlib_module_names:
        return (
            f"project_slug {slug!r} would shadow the module '{slug}' that the project imports: "
            f"choose another name (e.g. '{slug}_project')"
        )
    return None


def answer_problems(answers: dict) -> list[str]:
    problems = []
    slug_error = slug_problem(answers["project_slug"])
    if slug_error:
        problems.append(slug_error)
    if not EMAIL.match(answers["author_email"]):
        problems.append(
            f"author_email {answers['author_email']!r} is not an email address: "
            "use the form name@example.com"
        )
    if not VERSION.match(answers["version"]):
        problems.append(
            f"version {answers['version']!r} is not a PEP 440 version: use the form 0.1.0"
        )
    for field in ("project_name", "author_name"):
        if "\n" in answers[field] or not answers[field].strip():
            problems.append(f"{field} must be a single non-empty line")
    return problems


def main() -> int:
    problems = answer_problems(ANSWERS)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
