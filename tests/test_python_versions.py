"""Every python_version the template offers is run: a project rendered for it is installed
with that interpreter as its README says (`pip install -e ".[dev]"`, here through uv for
speed), its quick tests pass, and it trains and exports a short run.

Its own tier, left out of `make test`: `make test-pythons` (which .ci/run runs after it). A
version whose interpreter this machine lacks is skipped, saying so.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from options import CHOICE_OPTIONS, SLUG, TEMPLATE_DIR

pytestmark = pytest.mark.pythons

VERSIONS = CHOICE_OPTIONS["python_version"]
PYENV_VERSIONS = Path.home() / ".pyenv" / "versions"
UV = [sys.executable, "-m", "uv"]
# The dev environment's torch pins: a newer torch on the index must not change what is tested.
PINNED = re.compile(r"^(torch|torchvision)==", re.MULTILINE)


def interpreter(version: str) -> Path | None:
    """pyenv's newest build of python<version>, else one on PATH: the first that runs (a pyenv
    shim on PATH exists for every version, but runs only the ones pyenv has selected)."""
    builds = sorted(PYENV_VERSIONS.glob(f"{version}.*/bin/python{version}"), reverse=True)
    on_path = shutil.which(f"python{version}")
    for candidate in [*builds, *([Path(on_path)] if on_path else [])]:
        check = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if check.returncode == 0 and check.stdout.startswith(f"Python {version}."):
            return candidate
    return None


def run(command: list, cwd: Path, timeout: float = 900, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def torch_constraints(folder: Path) -> Path:
    requirements = (TEMPLATE_DIR / "requirements-dev.txt").read_text().splitlines()
    pins = [line for line in requirements if PINNED.match(line)]
    path = folder / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_python_version_installs_trains_and_exports(render, tmp_path, version):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no working python{version} on this machine ({PYENV_VERSIONS} or PATH)")
    project = render(python_version=version)
    venv = tmp_path / "venv"
    try:
        created = run([*UV, "venv", "--quiet", "--python", python, venv], tmp_path)
        assert created.returncode == 0, created.stderr
        venv_python = venv / "bin" / "python"
        install = [*UV, "pip", "install", "--quiet", "--python", venv_python]
        install += ["--constraint", torch_constraints(tmp_path), "--editable", f"{project}[dev]"]
        installed = run(install, project)
        assert installed.returncode == 0, installed.stderr[-3000:]
        reported = run([venv_python, "-c", "import sys; print(sys.version)"], project)
        assert reported.stdout.startswith(f"{version}."), reported.stdout

        quick = [venv_python, "-m", "pytest", "-q", "-x", "-m", "not slow"]
        tested = run(quick, project, WANDB_MODE="offline")
        assert tested.returncode == 0, tested.stdout[-3000:]

        train = [venv_python, "-m", f"{SLUG}.train", "--epochs", "1", "--warmup-epochs", "0"]
        train += ["--no-progress", "--name", f"python{version}", "--export-onnx"]
        trained = run(train, project, WANDB_MODE="offline")
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert (project / "runs" / f"python{version}" / "model.onnx").is_file()
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 6 GB with torch's CUDA libraries
