"""Project tooling: pip install, pre-commit, the CI workflows and template updates with cruft."""

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from options import CHOICE_OPTIONS, CODE_SHAPING, ROW_OPTIONS, SLUG, TEMPLATE_DIR, workflow_rows

SCRATCH = TEMPLATE_DIR / ".scratch"
PYTHON_VERSIONS = CHOICE_OPTIONS["python_version"]
# Every feature on: the most files for pre-commit to check, every module a command may name.
FULL = {"logger": "both", "mixed_precision": "yes", "multi_gpu": "both", "onnx_export": "yes"}


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: float = 600):
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-4000:]


# Variables that would tie a subprocess to the dev environment instead of the venv under test.
DEV_ENVIRONMENT = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")


# --- Packaging -----------------------------------------------------------------------------------


@pytest.mark.slow  # 40 s alone, 85 s beside other tests on two cores
def test_rendered_project_installs_with_pip_and_its_commands_run(render, tmp_path):
    # pip writes <slug>.egg-info into the project: install a copy, not the shared render.
    project = shutil.copytree(render(), tmp_path / SLUG)
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = {name: value for name, value in os.environ.items() if name not in DEV_ENVIRONMENT}
    created = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    assert created.returncode == 0, output(created)
    # The dev environment is itself a venv, so --system-site-packages would only expose the
    # base interpreter. A .pth file layers the dev environment's packages (torch, pip, ...)
    # under the fresh venv instead: pip installs into the venv, finds the dependencies already
    # there (it never uninstalls outside the venv) and fetches only the build backend.
    purelib = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, env
    ).stdout.strip()
    Path(purelib, "dev-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    install = run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[dev]"],
        project,
        env,
    )
    assert install.returncode == 0, output(install)

    located = run([str(python), "-c", f"import {SLUG}; print({SLUG}.__file__)"], tmp_path, env)
    assert Path(located.stdout.strip()) == project / "src" / SLUG / "__init__.py"  # editable
    commands = ("train", "evaluate", "export", "predict")
    scripts = [venv / "bin" / f"{SLUG}-{command}" for command in commands]
    for script in scripts:
        assert script.is_file(), f"console script {script.name} not installed"
    helps = [
        subprocess.Popen(
            [script, "--help"],
            cwd=tmp_path,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for script in scripts
    ]  # concurrently: two of them import torch before parsing
    for script, process in zip(scripts, helps, strict=True):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{script.name}: {stderr[-3000:]}"
        assert stdout.startswith("usage:"), stdout[:500]


# --- pre-commit ----------------------------------------------------------------------------------


def pre_commit(project: Path) -> subprocess.CompletedProcess:
    # Hook environments are cached in the checkout's scratch folder: installed once, reused.
    env = {**os.environ, "PRE_COMMIT_HOME": str(SCRATCH / "pre-commit")}
    command = [sys.executable, "-m", "pre_commit", "run", "--all-files", "--show-diff-on-failure"]
    return run(command, project, env)


def git_status(project: Path) -> str:
    return run(["git", "status", "--porcelain"], project).stdout


def test_pre_commit_passes_on_a_fresh_project_and_changes_nothing(render):
    project = render(**FULL, pre_commit="yes", init_git="yes")
    assert git_status(project) == ""
    result = pre_commit(project)
    assert result.returncode == 0, output(result)
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    # Installable from a package index alone: nothing cloned from git, every dependency pinned.
    assert all(repo["repo"] == "local" for repo in config["repos"])
    for hook in hooks:
        assert hook["language"] == "python", hook["id"]
        assert all("==" in dep for dep in hook["additional_dependencies"]), hook["id"]
    for hook in hooks:  # each hook ran on some files: none was skipped for want of files
        assert re.search(rf"^{re.escape(hook['name'])}\.+Passed$", result.stdout, re.M), (
            f"hook {hook['id']} did not pass:\n{result.stdout}"
        )
    assert git_status(project) == ""


def test_pre_commit_hooks_fix_and_report_a_bad_file(render, tmp_path):
    project = shutil.copytree(render(**FULL, pre_commit="yes", init_git="yes"), tmp_path / SLUG)
    bad = project / "src" / SLUG / "scratch.py"
    bad.write_text("import os\nvalue = {'a':1}   \n\n\n")  # unused import, spaces, blank lines
    run(["git", "add", str(bad)], project)
    result = pre_commit(project)
    assert result.returncode != 0, output(result)
    assert re.search(r"^ruff check\.+Failed$", result.stdout, re.M), result.stdout
    assert bad.read_text() == 'value = {"a": 1}\n'


# --- CI workflows --------------------------------------------------------------------------------

PINNED_ACTION = re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\b")
PYTHON_PROGRAM = re.compile(r"(?:.*/)?python(?:\d+(?:\.\d+)?)?|\$\(PYTHON\)")
# Launchers whose own `-m` names a second module to run.
LAUNCHERS = {"torch.distributed.run"}
SEPARATORS = {"&&", "||", ";", "|", "&"}


def load_workflow(path: Path) -> dict:
    return load_workflow_text(path.read_text())


def load_workflow_text(text: str) -> dict:
    workflow = yaml.safe_load(text)
    if True in workflow:  # YAML 1.1 reads the bare key `on` as a boolean
        workflow["on"] = workflow.pop(True)
    return workflow


def run_scripts(workflow: dict) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


def shell_commands(script: str) -> list[list[str]]:
    """Split a `run:` script or Makefile recipe into simple commands, env assignments dropped."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        current: list[str] = []
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True  # `$(PYTHON)`, `--flag=x` and paths stay whole words
        for token in lexer:
            if token in SEPARATORS:
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    simple = []
    for command in commands:
        command = [token.lstrip("@-") if i == 0 else token for i, token in enumerate(command)]
        while command and re.fullmatch(r"[A-Za-z_]\w*=.*", command[0]):
            command = command[1:]
        if command:
            simple.append(command)
    return simple


def make_targets_called(command: list[str]) -> list[str]:
    if Path(command[0]).name != "make":
        return []
    return [arg for arg in command[1:] if not arg.startswith("-") and "=" not in arg]


def python_modules_called(command: list[str]) -> list[str]:
    """Modules run with `python -m` (and the module a launcher such as torchrun runs)."""
    modules = []
    if PYTHON_PROGRAM.fullmatch(command[0]) and "-m" in command:
        position = command.index("-m")
        modules.append(command[position + 1])
        rest = command[position + 2 :]
        if modules[0] in LAUNCHERS and "-m" in rest:
            modules.append(rest[rest.index("-m") + 1])
    return modules


def makefile_targets(makefile: Path) -> set[str]:
    targets = set()
    for line in makefile.read_text().splitlines():
        if line.startswith("\t") or line.lstrip().startswith("#"):
            continue
        match = re.match(r"([\w./ -]+?)\s*::?(?!=)", line)
        if match:
            targets |= {name for name in match.group(1).split() if not name.startswith(".")}
    return targets


def makefile_recipes(makefile: Path) -> str:
    lines = makefile.read_text().splitlines()
    recipes = "\n".join(line[1:] for line in lines if line.startswith("\t"))
    return re.sub(r"\$\(abspath (\$\(\w+\))\)", r"\1", recipes)  # $(abspath $(BIN)) -> $(BIN)


def module_exists(module: str, project: Path) -> bool:
    """A runnable module of the project's package, or an installed one."""
    parts = module.split(".")
    if (project / "src" / parts[0]).is_dir():
        path = project.joinpath("src", *parts)
        source = path.with_suffix(".py")
        if source.is_file():
            return 'if __name__ == "__main__":' in source.read_text()
        return (path / "__main__.py").is_file()
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package runs only with a __main__
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return True


class WorkflowSource:
    """The workflows of the template (name "template") or of a project rendered for a Python."""

    def __init__(self, name: str, render) -> None:
        if name == "template":
            self.root = TEMPLATE_DIR
            self.project = render(**FULL)  # the package its training steps run
            ruff = tomllib.loads((TEMPLATE_DIR / "ruff.toml").read_text())
            self.python_version = ruff["target-version"].replace("py3", "3.")
        else:
            self.python_version = name.removeprefix("python")
            self.root = self.project = render(python_version=self.python_version, ci="github")
        self.files = sorted((self.root / ".github" / "workflows").glob("*.y*ml"))
        assert self.files, f"no workflow in {self.root}"
        self.makefile = self.root / "Makefile"


WORKFLOW_SOURCES = ["template", *(f"python{version}" for version in PYTHON_VERSIONS)]


@pytest.mark.parametrize("name", WORKFLOW_SOURCES)
def test_workflow_jobs_have_steps_and_pinned_actions(render, name):
    source = WorkflowSource(name, render)
    for path in source.files:
        workflow = load_workflow(path)
        assert workflow["on"] and workflow["jobs"], path
        for job_name, job in workflow["jobs"].items():
            assert job["runs-on"] and job["steps"], f"{path.name}: job {job_name}"
            for step in job["steps"]:
                assert ("uses" in step) != ("run" in step), f"{path.name}: {job_name}: {step}"
                if "uses" in step:
                    assert PINNED_ACTION.fullmatch(step["uses"]), step["uses"]
        for line in path.read_text().splitlines():
            if re.match(r"\s*(- )?uses:", line):
                assert VERSION_COMMENT.search(line), f"no version comment: {line.strip()}"


@pytest.mark.parametrize("name", WORKFLOW_SOURCES)
def test_workflow_make_calls_are_real_targets(render, name):
    source = WorkflowSource(name, render)
    targets = makefile_targets(source.makefile)
    assert {"install", "test", "lint"} <= targets
    for path in source.files:
        called = [
            target
            for script in run_scripts(load_workflow(path))
            for command in shell_commands(script)
            for target in make_targets_called(command)
        ]
        assert called, f"{path.name} calls no make target"
        assert set(called) <= targets, (
            f"{path.name}: not in {source.makefile}: {set(called) - targets}"
        )


@pytest.mark.parametrize("name", WORKFLOW_SOURCES)
def test_workflow_and_makefile_python_modules_exist(render, name):
    source = WorkflowSource(name, render)
    scripts = [script for path in source.files for script in run_scripts(load_workflow(path))]
    scripts.append(makefile_recipes(source.makefile))
    modules = {
        module
        for script in scripts
        for command in shell_commands(script)
        for module in python_modules_called(command)
    }
    assert modules, "no python -m command found"
    missing = sorted(module for module in modules if not module_exists(module, source.project))
    assert missing == []


@pytest.mark.parametrize("name", WORKFLOW_SOURCES)
def test_workflow_sets_up_the_chosen_python(render, name):
    source = WorkflowSource(name, render)
    for path in source.files:
        for job_name, job in load_workflow(path)["jobs"].items():
            setups = [step for step in job["steps"] if "setup-python" in step.get("uses", "")]
            assert len(setups) == 1, f"{path.name}: job {job_name} sets up no Python"
            matrix = job.get("strategy", {}).get("matrix", {})
            if any("python_version" in row for row in matrix.get("include", [])):
                # The template's rows each choose a Python: a row sets up its own.
                assert setups[0]["with"]["python-version"] == "${{ matrix.python_version }}"
            elif "python-version" in matrix:  # a project's matrix: its Python, more if listed
                assert setups[0]["with"]["python-version"] == "${{ matrix.python-version }}"
                assert matrix["python-version"] == [source.python_version]
            else:
                assert setups[0]["with"]["python-version"] == source.python_version


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_generated_workflow_shows_a_working_matrix_over_newer_pythons(render, version):
    """The commented example, put in place of the project's one-version list, is a matrix
    over that version and the newer ones."""
    project = render(python_version=version, ci="github")
    text = (project / ".github" / "workflows" / "ci.yml").read_text()
    example = re.search(r"^(\s*)# (python-version: \[.*\])$", text, re.MULTILINE)
    assert example, "no commented matrix example"
    chosen = f'{example.group(1)}python-version: ["{version}"]'
    assert chosen in text
    widened = text.replace(chosen, example.group(1) + example.group(2))
    matrix = load_workflow_text(widened)["jobs"]["test-cpu"]["strategy"]["matrix"]

    def number(text: str) -> tuple[int, ...]:
        return tuple(map(int, text.split(".")))

    offered = sorted(PYTHON_VERSIONS, key=number)
    assert matrix["python-version"] == [v for v in offered if number(v) >= number(version)]


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_generated_workflow_lints_tests_on_cpu_and_has_a_gpu_job(render, version):
    project = render(python_version=version, ci="github")
    jobs = load_workflow(project / ".github" / "workflows" / "ci.yml")["jobs"]

    def make_calls(job: dict) -> set[str]:
        scripts = [step["run"] for step in job["steps"] if "run" in step]
        return {t for s in scripts for c in shell_commands(s) for t in make_targets_called(c)}

    assert set(jobs) == {"lint", "test-cpu", "gpu"}
    assert "lint" in make_calls(jobs["lint"])
    assert jobs["test-cpu"]["runs-on"] == "ubuntu-latest"
    assert {"install-cpu", "test"} <= make_calls(jobs["test-cpu"])
    assert {"self-hosted", "gpu"} <= set(jobs["gpu"]["runs-on"])
    assert "test" in make_calls(jobs["gpu"])


def test_template_workflow_renders_lints_and_trains_every_row():
    """The rows themselves are checked in test_options.py; here, what each row runs."""
    jobs = load_workflow(TEMPLATE_DIR / ".github" / "workflows" / "template.yml")["jobs"]
    assert jobs["combination"]["strategy"]["matrix"] == {"include": workflow_rows()}
    scripts = [step["run"] for step in jobs["combination"]["steps"] if "run" in step]
    commands = [command for script in scripts for command in shell_commands(script)]

    renders = [c for c in commands if python_modules_called(c) == ["cookiecutter"]]
    assert len(renders) == 1 and "--no-input" in renders[0]
    for name in (*CODE_SHAPING, *ROW_OPTIONS):
        assert f"{name}=${{{{" in renders[0] and f"matrix.{name}" in renders[0], name
    ruff_calls = [
        c[c.index("ruff") + 1 :] for c in commands if python_modules_called(c) == ["ruff"]
    ]
    assert ["check", "."] in ruff_calls and ["format", "--check", "."] in ruff_calls
    trains = [c for c in commands if f"{SLUG}.train" in python_modules_called(c)]
    assert trains and all("--epochs" in command for command in trains)

    suite = [job for name, job in jobs.items() if name != "combination"]
    suite_calls = {
        target
        for job in suite
        for step in job["steps"]
        if "run" in step
        for command in shell_commands(step["run"])
        for target in make_targets_called(command)
    }
    assert "test" in suite_calls


def test_install_cpu_takes_torch_from_the_cpu_only_index_first(render):
    """PyTorch's CPU index cannot be reached from the test machines: the command lines that
    `make install-cpu` runs are checked instead, in their order."""
    project = render()
    outer_make = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")  # under make test, make would say more
    env = {key: value for key, value in os.environ.items() if key not in outer_make}
    dry = run(["make", "--no-print-directory", "-n", "install-cpu", "PYTHON=python"], project, env)
    assert dry.returncode == 0, dry.stderr
    commands = [shlex.split(line) for line in dry.stdout.splitlines() if line.strip()]
    assert commands == [
        [
            "python",
            "-m",
            "pip",
            "install",
            "torch",
            "torchvision",
            "--index-url",
            "https://download.pytorch.org/whl/cpu",
        ],
        ["python", "-m", "pip", "install", "-e", ".[dev]"],
    ]


# --- Template updates with cruft -----------------------------------------------------------------

NOT_TEMPLATE = (".git", ".venv", ".scratch", ".ruff_cache", ".pytest_cache", "__pycache__")
UPDATE_LINE = "A line the template added after this project was created."


def git_environment(root: Path) -> dict:
    """Hermetic git: an identity, no user config, and no repository found above `root`."""
    identity = {
        f"GIT_{who}_{what}": value
        for who in ("AUTHOR", "COMMITTER")
        for what, value in (("NAME", "Template Tests"), ("EMAIL", "tests@example.com"))
    }
    return {
        **os.environ,
        **identity,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        # tmp folders live inside the template checkout: never fall back to its repository.
        "GIT_CEILING_DIRECTORIES": str(root),
        "TMPDIR": str(root / "tmp"),
    }


def git(repo: Path, env: dict, *args: str) -> str:
    result = run(["git", *args], repo, env)
    assert result.returncode == 0, output(result)
    return result.stdout.strip()


def cruft(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "cruft", *args], project, env)


def snapshot(project: Path) -> dict[str, str]:
    return {
        str(path.relative_to(project)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


@pytest.fixture
def template_repo(tmp_path) -> tuple[Path, dict]:
    """The template's working tree, uncommitted edits included, as a fresh git repository."""
    env = git_environment(tmp_path)
    (tmp_path / "tmp").mkdir()
    repo = shutil.copytree(
        TEMPLATE_DIR, tmp_path / "template", ignore=shutil.ignore_patterns(*NOT_TEMPLATE)
    )
    git(repo, env, "init", "--quiet", "--initial-branch=main")
    git(repo, env, "add", "--all")
    git(repo, env, "commit", "--quiet", "-m", "torch-template")
    return repo, env


CRUFT_CREATE = {
    # init_git=no: a plain folder; cruft applies updates with `git apply --reject`.
    "plain-folder": ["--extra-context", '{"init_git": "no"}'],
    # init_git=yes: the generated pyproject.toml's [tool.cruft] skip keeps the renders' .git
    # folders out of the update patch, and cruft three-way merges in the repository.
    "git-repository": [],
}


@pytest.mark.parametrize("create_flags", CRUFT_CREATE.values(), ids=CRUFT_CREATE.keys())
def test_cruft_project_takes_a_template_update(template_repo, tmp_path, create_flags):
    repo, env = template_repo
    out = tmp_path / "out"
    created = cruft(
        tmp_path, env, "create", str(repo), "--no-input", "--output-dir", str(out), *create_flags
    )
    assert created.returncode == 0, output(created)
    project = out / SLUG
    cruft_state = json.loads((project / ".cruft.json").read_text())
    assert cruft_state["commit"] == git(repo, env, "rev-parse", "HEAD")
    up_to_date = cruft(project, env, "check")
    assert up_to_date.returncode == 0, output(up_to_date)

    readme = repo / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text() + f"\n{UPDATE_LINE}\n")
    git(repo, env, "commit", "--quiet", "--all", "-m", "Add a README line")
    stale = cruft(project, env, "check")
    assert stale.returncode != 0 and "out of date" in stale.stdout, output(stale)

    before = snapshot(project)
    updated = cruft(project, env, "update", "--skip-apply-ask", "--allow-untracked-files")
    assert updated.returncode == 0, output(updated)
    after = snapshot(project)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed == {"README.md", ".cruft.json"}  # the change, and no *.rej or stray files
    assert (project / "README.md").read_text().endswith(f"\n{UPDATE_LINE}\n")
    again = cruft(project, env, "check")
    assert again.returncode == 0, output(again)
