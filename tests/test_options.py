"""Every value of every option renders, each with its effect: the renders below are generated
from cookiecutter.json (the code-shaping ones by the training matrix), so a new value is
exercised as soon as it is added; and the template's workflow holds a row for every value and
every pair of code-shaping values, and runs every shard of the suite."""

import subprocess
import tomllib

import pytest
import yaml

from options import (
    CHOICE_OPTIONS,
    CODE_SHAPING,
    OWN_TIERS,
    ROW_OPTIONS,
    SHARDS,
    SLUG,
    TEMPLATE_DIR,
    code_shaping_combinations,
    expected_files,
    value_pairs,
    workflow_rows,
)

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


WORKFLOW = TEMPLATE_DIR / ".github" / "workflows" / "template.yml"


def workflow_jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def test_workflow_rows_are_the_suites_pairwise_set():
    rows = workflow_jobs()["combination"]["strategy"]["matrix"]["include"]
    assert rows == workflow_rows(), "regenerate the rows from options.workflow_rows()"


@pytest.mark.parametrize("option", [*CODE_SHAPING, *ROW_OPTIONS])
def test_workflow_has_a_row_for_every_value_of(option):
    rows = workflow_jobs()["combination"]["strategy"]["matrix"]["include"]
    assert {row[option] for row in rows} == set(CHOICE_OPTIONS[option])


def test_workflow_rows_meet_every_pair_of_code_shaping_values():
    rows = workflow_jobs()["combination"]["strategy"]["matrix"]["include"]
    every_pair = set().union(*map(value_pairs, code_shaping_combinations()))
    shaping = [{name: row[name] for name in CODE_SHAPING} for row in rows]
    assert set().union(*map(value_pairs, shaping)) == every_pair


def test_every_test_module_is_in_one_shard_and_the_workflow_runs_each():
    modules = sorted(path.name for path in (TEMPLATE_DIR / "tests").glob("test_*.py"))
    sharded = [name for names in SHARDS.values() for name in names]
    assert sorted([*sharded, *OWN_TIERS]) == modules
    assert workflow_jobs()["suite"]["strategy"]["matrix"]["shard"] == list(SHARDS)
