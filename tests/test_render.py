"""Every code-shaping combination renders cleanly, with exactly its files, lint-free."""

import subprocess
import sys
from pathlib import Path

import pytest

from options import SLUG, code_shaping_combinations, combination_id, expected_files

COMBINATIONS = code_shaping_combinations()
RUFF = [sys.executable, "-m", "ruff"]


def project_files(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_combination_renders_exactly_its_files(render, combo):
    project = render(**combo)
    answers = {"project_slug": SLUG, "license": "MIT", "ci": "github", "pre_commit": "yes", **combo}
    assert project_files(project) == expected_files(answers)


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_combination_has_no_leftover_jinja(render, combo):
    project = render(**combo)
    leftovers = [
        name
        for name in project_files(project)
        if any(tag in (project / name).read_text() for tag in ("{{", "{%", "{#"))
    ]
    assert leftovers == []


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_combination_passes_ruff(render, combo):
    project = render(**combo)
    check = subprocess.run([*RUFF, "check", "."], cwd=project, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    formatted = subprocess.run(
        [*RUFF, "format", "--check", "."], cwd=project, capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout


def test_unselected_features_leave_no_imports(render):
    project = render(logger="none", mixed_precision="no", multi_gpu="none", onnx_export="no")
    sources = "\n".join(path.read_text() for path in (project / "src").rglob("*.py"))
    pyproject = (project / "pyproject.toml").read_text()
    feature_code = (
        "SummaryWriter",
        "import wandb",
        "import onnx",
        "GradScaler(",
        "torch.autocast",
        "DistributedDataParallel(",
        "nn.DataParallel(",
        "--amp",
        "--dp",
        "--export-onnx",
    )
    for snippet in feature_code:
        assert snippet not in sources, snippet
    for dependency in ("tensorboard", "wandb", "onnx", "matplotlib"):
        assert f'"{dependency}' not in pyproject, dependency
