"""Every code-shaping combination renders cleanly, with exactly its files, lint-free: each with
sweeps and insight chosen (the defaults), and an all-pairs set of them with neither."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from options import (
    ALL_OFF,
    ALL_ON,
    CHOICE_OPTIONS,
    SLUG,
    code_shaping_combinations,
    expected_files,
    pairwise_combinations,
    uses_ddp,
    uses_dp,
    uses_tensorboard,
    uses_wandb,
)

# The options that add a command or views of a run, not code the others shape: every
# combination renders with them chosen (their defaults), an all-pairs set without them.
EXTRAS = ("sweeps", "insight")
EXTRAS_CHOSEN = {name: CHOICE_OPTIONS[name][0] for name in EXTRAS}
WITHOUT_EXTRAS = {name: "no" for name in EXTRAS}
COMBINATIONS = code_shaping_combinations() + [
    {**combo, **WITHOUT_EXTRAS} for combo in pairwise_combinations([ALL_ON, ALL_OFF])
]
RUFF = [sys.executable, "-m", "ruff"]


def combination_id(combo: dict) -> str:
    return "-".join(f"{name}={value}" for name, value in combo.items())


def answers_of(combo: dict) -> dict:
    """The combination's answers to the options it leaves at their defaults, too."""
    return {**EXTRAS_CHOSEN, "project_slug": SLUG, "license": "MIT", **combo}


def project_files(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_combination_renders_exactly_its_files(render, combo):
    project = render(**combo)
    answers = {"ci": "github", "pre_commit": "yes", **answers_of(combo)}
    assert project_files(project) == expected_files(answers)


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combination_id)
def test_combination_has_no_leftover_jinja(render, combo):
    project = render(**combo)
    leftovers = [
        name
        for name in project_files(project)
        if any(tag in without_actions_expressions(project / name) for tag in ("{{", "{%", "{#"))
    ]
    assert leftovers == []


def without_actions_expressions(path: Path) -> str:
    """The file's text less GitHub Actions' own `${{ ... }}` expressions (workflows)."""
    return re.sub(r"\$\{\{[^}]*\}\}", "", path.read_text())


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
FEATURE_TRACES["sweeps"] = ("import optuna", "SearchSpace", "open_study")
FEATURE_TRACES["insight"] = ("GradCam", "BestCheckpointInsights", "log_embeddings")
# What each of those leaves in the generated tests (a sweep's study folder is still refused by
# predict and train, and tested so, without the sweep command).
TEST_TRACES = {
    "sweeps": ("optuna", "sweep.yaml", "sweep.main", ".sweep import"),
    "insight": ("--cam-every", "INSIGHT", "--embeddings", "insight", "GradCam"),
}
FEATURE_DEPENDENCIES = {"tensorboard": ("tensorboard", "matplotlib"), "wandb": ("wandb",)}
FEATURE_DEPENDENCIES["onnx"] = ("onnx",)
FEATURE_DEPENDENCIES["sweeps"] = ("optuna",)
CONSOLE_SCRIPTS = {"onnx": f"{SLUG}-export", "sweeps": f"{SLUG}-sweep"}


def selected_features(combo: dict) -> set[str]:
    combo = answers_of(combo)
    chosen = {"tensorboard"} if uses_tensorboard(combo) else set()
    chosen |= {"wandb"} if uses_wandb(combo) else set()
    chosen |= {"ddp"} if uses_ddp(combo) else set()
    chosen |= {"dp"} if uses_dp(combo) else set()
    chosen |= {"amp"} if combo["mixed_precision"] == "yes" else set()
    chosen |= {"onnx"} if combo["onnx_export"] == "yes" else set()
    chosen |= {option for option in ("sweeps", "insight") if combo[option] == "yes"}
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
    for feature, script in CONSOLE_SCRIPTS.items():
        assert (f"\n{script} = " in pyproject) == (feature in chosen), script
    tests = "\n".join(path.read_text() for path in (project / "tests").glob("*.py"))
    for feature, traces in TEST_TRACES.items():
        if feature not in chosen:
            present = [trace for trace in traces if trace in tests]
            assert present == [], f"{feature} not selected, yet the tests name {present}"


# What the README says about each feature; none of it may appear when the feature is not chosen.
README_TRACES = {
    "tensorboard": re.compile(r"tensorboard", re.IGNORECASE),
    "wandb": re.compile(r"wandb|weights & biases", re.IGNORECASE),
    "amp": re.compile(r"--amp\b|GradScaler|mixed precision", re.IGNORECASE),
    "ddp": re.compile(r"torchrun|DistributedDataParallel|\bDDP\b|sbatch|nccl|gloo|\.launch\b"),
    "dp": re.compile(r"--dp\b|(?<![A-Za-z])DataParallel"),
    "onnx": re.compile(r"onnx", re.IGNORECASE),
    "sweeps": re.compile(r"sweep|optuna", re.IGNORECASE),
    "insight": re.compile(r"Grad-CAM|--cam-every|--embeddings|--mistakes|mistakes\.png"),
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
