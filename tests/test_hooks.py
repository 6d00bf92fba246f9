"""Answers are validated before anything is written, and are always treated as data."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from options import OPTIONS, SLUG, TEMPLATE_DIR

COOKIECUTTER = [sys.executable, "-m", "cookiecutter", str(TEMPLATE_DIR)]

BAD_ANSWERS = {
    "keyword slug": ({"project_slug": "class"}, "project_slug 'class' is a Python keyword"),
    "soft keyword slug": ({"project_slug": "match"}, "project_slug 'match' is a Python keyword"),
    "torch slug": ({"project_slug": "torch"}, "would shadow the module 'torch'"),
    "test slug": ({"project_slug": "test"}, "would shadow the module 'test'"),
    "stdlib slug": ({"project_slug": "json"}, "would shadow the module 'json'"),
    "digit-first slug": ({"project_slug": "3d_net"}, "is not a valid package name"),
    "hyphenated slug": ({"project_slug": "my-net"}, "is not a valid package name"),
    "slug with a space": ({"project_slug": "my net"}, "is not a valid package name"),
    "slug with a quote": ({"project_slug": 'x"; import os'}, "is not a valid package name"),
    "email without @": ({"author_email": "me.example.com"}, "author_email"),
    "email without domain": ({"author_email": "me@"}, "author_email"),
    "version with words": ({"version": "one"}, "is not a PEP 440 version"),
    "version with spaces": ({"version": "1.0 beta"}, "is not a PEP 440 version"),
}


def bake(output_dir: Path, answers: dict, **kwargs) -> subprocess.CompletedProcess:
    pairs = [f"{key}={value}" for key, value in {"init_git": "no", **answers}.items()]
    command = [*COOKIECUTTER, "--no-input", "--output-dir", str(output_dir), *pairs]
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("answers, message", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_bad_answer_is_rejected_with_one_clear_line(tmp_path, answers, message):
    result = bake(tmp_path, answers)
    assert result.returncode != 0
    hook_lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    ours = [line for line in hook_lines if "hook script" not in line]
    assert len(ours) == 1 and message in ours[0], result.stderr
    assert "pre_gen_project" not in result.stderr.replace("pre_gen_project hook", "")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "answers",
    [
        {"project_slug": "vision_lab", "author_email": "a.b+ml@lab.example.org"},
        {"project_slug": "net2", "version": "1.0.0rc1"},
        {"project_slug": "_private_net", "version": "2!1.0.post1.dev3"},
    ],
)
def test_good_answers_are_accepted(tmp_path, answers):
    result = bake(tmp_path, answers)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / answers["project_slug"] / "src" / answers["project_slug"]).is_dir()


def check_description_is_data(project: Path, description: str) -> None:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == description
    assert description in (project / "README.md").read_text()
    probe = subprocess.run(
        [sys.executable, "-c", f"import {SLUG}.config.schema"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr


def test_quotes_backslashes_and_newlines_render_as_data(tmp_path):
    description = 'He said "hi" \\ it\'s """triple""" \\n\nsecond line'
    result = bake(tmp_path, {"description": description, "author_name": 'O\'Brien "Bob"'})
    assert result.returncode == 0, result.stderr
    check_description_is_data(tmp_path / SLUG, description)
    assert pyproject_author(tmp_path / SLUG) == 'O\'Brien "Bob"'


def pyproject_author(project: Path) -> str:
    return tomllib.loads((project / "pyproject.toml").read_text())["project"]["authors"][0]["name"]


def test_template_syntax_typed_at_the_prompt_is_data(tmp_path):
    """Answers typed interactively are never rendered: `{{` and `{%` stay literal text."""
    description = 'Uses {{ cookiecutter.author_name }} and {% if x %} and "quotes" \\ too'
    prompts = [name for name in OPTIONS if not name.startswith("_")]
    at = prompts.index("description")
    answers = [""] * at + [description] + [""] * (len(prompts) - at - 1)  # defaults but it
    result = subprocess.run(
        [*COOKIECUTTER, "--output-dir", str(tmp_path)],
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    check_description_is_data(tmp_path / SLUG, description)


def test_template_syntax_on_the_command_line_writes_nothing(tmp_path):
    """cookiecutter renders --no-input answers as templates: a broken one must stop cleanly."""
    result = bake(tmp_path, {"description": "oops {{ unclosed"})
    assert result.returncode != 0
    assert list(tmp_path.iterdir()) == []


def git_home(tmp_path: Path, config: str) -> dict:
    """An environment whose only git configuration is `config` (a fake HOME and global file)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(config)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    return env


def first_commit_author(project: Path) -> str:
    log = ["git", "-C", str(project), "log", "--format=%an <%ae>|%cn <%ce>"]
    return subprocess.run(log, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize(
    "config, author",
    [
        (
            "[user]\n\tname = Ada Lovelace\n\temail = ada@lab.example.org\n",
            "Ada Lovelace <ada@lab.example.org>",
        ),
        ("", "Grace Hopper <grace@example.org>"),
    ],
    ids=["user's git identity", "no git identity: the answers' author"],
)
def test_first_commit_is_by_the_users_git_identity(tmp_path, config, author):
    answers = {
        "init_git": "yes",
        "author_name": "Grace Hopper",
        "author_email": "grace@example.org",
    }
    result = bake(tmp_path / "out", answers, env=git_home(tmp_path, config))
    assert result.returncode == 0, result.stderr
    assert first_commit_author(tmp_path / "out" / SLUG) == f"{author}|{author}"


def template_with_a_second_task(tmp_path: Path) -> Path:
    """A copy of the template offering `other_task` too, with one dataset and one model of it."""
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, template, ignore=shutil.ignore_patterns(".git", ".venv", ".*"))
    answers = json.loads((template / "cookiecutter.json").read_text())
    answers["task"].append("other_task")
    (template / "cookiecutter.json").write_text(json.dumps(answers))
    package = template / "{{cookiecutter.project_slug}}" / "src" / "{{cookiecutter.project_slug}}"
    (package / "tasks" / "other_task").mkdir()
    (package / "tasks" / "other_task" / "__init__.py").write_text('"""Another task."""\n')
    for registry in ("datasets", "models"):
        (package / registry / "other.py").write_text('register(Info("other", task="other_task"))\n')
    return template


@pytest.mark.parametrize("task", ["image_classification", "other_task"])
def test_a_render_keeps_only_the_chosen_tasks_code(tmp_path, task):
    template = template_with_a_second_task(tmp_path)
    output = tmp_path / "out"
    command = [sys.executable, "-m", "cookiecutter", str(template), "--no-input"]
    command += ["--output-dir", str(output), "init_git=no", f"task={task}", f"project_slug={SLUG}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    package = output / SLUG / "src" / SLUG
    tasks = sorted(path.name for path in (package / "tasks").iterdir() if path.is_dir())
    assert tasks == [task]
    mine = task == "other_task"
    assert (package / "datasets" / "other.py").exists() == mine
    assert (package / "models" / "other.py").exists() == mine
    assert (package / "datasets" / "digits.py").exists() != mine
    assert (package / "models" / "simple_cnn.py").exists() != mine
    assert (package / "tasks" / "base.py").exists()  # the seam stays whatever the task


@pytest.mark.parametrize("extras", ["yes", "no"])
def test_a_package_named_before_the_tests_helpers_passes_ruff(tmp_path, extras):
    """Import sorting does not depend on the package's name: one that sorts before `conftest`
    keeps the tests' helper imports after its own."""
    answers = {"project_slug": "aardvark", "sweeps": extras, "insight": extras}
    result = bake(tmp_path, answers)
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=tmp_path / "aardvark",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout
