"""Every value of every option renders, each with its effect: the renders below are generated
from cookiecutter.json (the code-shaping ones by the training matrix), so a new value is
exercised as soon as it is added."""

import subprocess
import tomllib

import pytest

from options import CHOICE_OPTIONS, CODE_SHAPING, SLUG, expected_files

DEFAULTS = {name: values[0] for name, values in CHOICE_OPTIONS.items()}
VALUE_RENDERS = [
    {name: value}
    for name, values in CHOICE_OPTIONS.items()
    if name not in CODE_SHAPING
    for value in values
]


@pytest.mark.parametrize(
    "answers", VALUE_RENDERS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items())
)
def test_every_tooling_value_renders_with_its_effect(render, answers):
    project = render(**answers)
    full = {**DEFAULTS, "init_git": "no", **answers, "project_slug": SLUG}
    files = {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }
    assert files == expected_files(full)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={full['python_version']}"
    if full["license"] == "none":
        assert "license" not in pyproject["project"]
    else:
        assert pyproject["project"]["license"] == full["license"]
        license_text = (project / "LICENSE").read_text()
        assert {
            "MIT": "MIT License",
            "BSD-3-Clause": "BSD 3-Clause",
            "Apache-2.0": "Apache License",
        }[full["license"]] in license_text
    if full["ci"] == "github":
        workflow = (project / ".github/workflows/ci.yml").read_text()
        assert f'python-version: "{full["python_version"]}"' in workflow
    if full["init_git"] == "yes":
        git = ["git", "-C", str(project)]
        log = subprocess.run([*git, "log", "--oneline"], capture_output=True, text=True, check=True)
        assert len(log.stdout.splitlines()) == 1
        status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
        assert status.stdout == ""
    else:
        assert not (project / ".git").exists()
