"""The default project, rendered from this checkout and imported, for the benchmark scripts."""

import importlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "image_classifier"  # the slug the template's default (image) project name gives


def render_project(output_dir: Path, scratch: Path, *answers: str) -> Path:
    """Render the template with every default answer (all options on), as a user would, but
    for `answers` ("task=text_classification", ...)."""
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp = scratch / "tmp"  # cookiecutter writes rendered hook scripts to $TMPDIR
    tmp.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(output_dir)]
    subprocess.run(
        [*command, "init_git=no", *answers],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    return rendered_folder(output_dir)


def rendered_folder(output_dir: Path) -> Path:
    """The one project rendered into `output_dir` (its name follows the task: image_classifier,
    text_classifier)."""
    (project,) = (path for path in output_dir.iterdir() if path.is_dir())
    return project


def build_training(project: dict, argv: list[str]):
    """(config, Training, cpu Runtime) for `argv`, built by the generated trainer as a real run
    builds them, with its log lines kept quiet."""
    runtime = project["runs.runtime"]
    config = project["config.parser"].parse_config(argv)
    runtime.seed_everything(config.data.seed, config.run.deterministic)
    quiet = logging.getLogger("benchmark")
    quiet.setLevel(logging.WARNING)
    cpu = runtime.Runtime(torch.device("cpu"))
    return config, project["training.fit"].build_training(config, cpu, quiet), cpu


def import_project(project_dir: Path, names: tuple[str, ...]) -> dict:
    """The generated package's modules `names`, by name."""
    sys.path.insert(0, str(project_dir / "src"))
    return {name: importlib.import_module(f"{project_dir.name}.{name}") for name in names}


def machine_line() -> str:
    """The machine a benchmark ran on, for the first line of its output."""
    return (
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {'CUDA' if torch.cuda.is_available() else 'no GPU'}"
    )
