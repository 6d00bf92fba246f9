"""Every code-shaping combination renders cleanly, with exactly its files, lint-free."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from options import (
    SLUG,
    code_shaping_combinations,
    combination_id,
    expected_files,
    uses_ddp,
    uses_dp,
    uses_tensorboard,
    uses_wandb,
)

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


# What each feature's code says when it is there; none of it may appear when it is not.
# (torch.autocast is in every project: Grad-CAM turns it off to compute in float32.)
FEATURE_TRACES = {
    "tensorboard": ("SummaryWriter", "tensorboard_logger", "--histogram-every"),
    "wandb": ("import wandb", "wandb_logger", "--wandb-project"),
    "amp": ("--amp", "--amp-dtype"),
    "ddp": ("DistributedDataParallel(", "init_process_group", "DistributedRuntime"),
    "dp": ("nn.DataParallel(", "--dp", "DataParallelRuntime"),
    "onnx": ("import onnx", "--export-onnx", "OnnxExport"),
}
FEATURE_DEPENDENCIES = {"tensorboard": ("tensorboard", "matplotlib"), "wandb": ("wandb",)}
FEATURE_DEPENDENCIES["onnx"] = ("onnx",)


def selected_features(combo: dict) -> set[str]:
    chosen = {"tensorboard"} if uses_tensorboard(combo) else set()
    chosen |= {"wandb"} if uses_wandb(combo) else set()
    chosen |= {"ddp"} if uses_ddp(combo) else set()
    chosen |= {"dp"} if uses_dp(combo) else set()
    chosen |= {"amp"} if combo["mixed_precision"] == "yes" else set()
    chosen |= {"onnx"} if combo["onnx_export"] == "yes" else set()
    return chosen


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_unselected_features_leave_no_trace(render, combo):
    project = render(**combo)
    sources = "\n".join(path.read_text() for path in (project / "src").rglob("*.py"))
    pyproject = (project / "pyproject.toml").read_text()
    chosen = selected_features(combo)
    for feature, traces in FEATURE_TRACES.items():
        present = [trace for trace in traces if trace in sources]
        if feature in chosen:
            assert present, f"{feature} selected but its code is missing"
        else:
            assert present == [], f"{feature} not selected, yet the code names {present}"
    for feature, dependencies in FEATURE_DEPENDENCIES.items():
        if feature not in chosen:
            assert not [name for name in dependencies if f'"{name}' in pyproject], feature


# What the README says about each feature; none of it may appear when the feature is not chosen.
README_TRACES = {
    "tensorboard": re.compile(r"tensorboard", re.IGNORECASE),
    "wandb": re.compile(r"wandb|weights & biases", re.IGNORECASE),
    "amp": re.compile(r"--amp\b|GradScaler|mixed precision", re.IGNORECASE),
    "ddp": re.compile(r"torchrun|DistributedDataParallel|\bDDP\b|sbatch|nccl|gloo|\.launch\b"),
    "dp": re.compile(r"--dp\b|(?<![A-Za-z])DataParallel"),
    "onnx": re.compile(r"onnx", re.IGNORECASE),
}


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_readme_describes_only_the_chosen_features(render, combo):
    readme = (render(**combo) / "README.md").read_text()
    chosen = selected_features(combo)
    for feature, trace in README_TRACES.items():
        mentions = sorted({match.group() for match in trace.finditer(readme)})
        if feature in chosen:
            assert mentions, f"{feature} selected but the README does not describe it"
        else:
            assert mentions == [], f"{feature} not selected, yet the README mentions {mentions}"
