"""Every value of every option is rendered at least once; the suite fails if one is not."""

import subprocess
import tomllib

import pytest

from options import CHOICE_OPTIONS, SLUG, code_shaping_combinations, expected_files

# Renders that cover every non-code-shaping value (project tooling and metadata choices).
TOOLING_RENDERS = [
    {"python_version": "3.12", "license": "BSD-3-Clause", "ci": "none", "pre_commit": "no"},
    {"python_version": "3.10", "license": "Apache-2.0", "ci": "github", "pre_commit": "yes"},
    {"python_version": "3.11", "license": "none", "ci": "none", "pre_commit": "yes"},
    {"license": "MIT", "init_git": "yes"},
]
DEFAULTS = {name: values[0] for name, values in CHOICE_OPTIONS.items()}


def all_exercised_answers() -> list[dict]:
    tooling = [{**DEFAULTS, "init_git": "no", **render} for render in TOOLING_RENDERS]
    matrix = [{**DEFAULTS, "init_git": "no", **combo} for combo in code_shaping_combinations()]
    return tooling + matrix


def test_every_option_value_is_exercised():
    exercised = {name: set() for name in CHOICE_OPTIONS}
    for answers in all_exercised_answers():
        for name in CHOICE_OPTIONS:
            exercised[name].add(answers[name])
    missing = {name: set(values) - exercised[name] for name, values in CHOICE_OPTIONS.items()}
    assert {name: values for name, values in missing.items() if values} == {}


@pytest.mark.parametrize("answers", TOOLING_RENDERS, ids=lambda a: "-".join(a.values()))
def test_tooling_values_render(render, answers):
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
