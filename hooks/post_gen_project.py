"""Remove the files of unselected options, write the LICENSE, optionally git init."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")


def unselected_paths(answers: dict) -> list[str]:
    """Files and folders that belong to options the user did not choose."""
    package = f"src/{answers['project_slug']}"
    logger = answers["logger"]
    multi_gpu = answers["multi_gpu"]
    paths = []
    if logger not in ("tensorboard", "both"):
        paths.append(f"{package}/loggers/tensorboard_logger.py")
        paths += ["tests/test_tensorboard.py", "tests/test_insight_tensorboard.py"]
        paths += ["tests/test_cam_tensorboard.py", "tests/test_text_insight_tensorboard.py"]
    if logger not in ("wandb", "both"):
        paths.append(f"{package}/loggers/wandb_logger.py")
        paths += ["configs/wandb_sweep.yaml", "tests/test_wandb_sweep.py", "tests/offline_wandb.py"]
        paths += ["tests/test_insight_wandb.py", "tests/test_cam_wandb.py"]
        paths.append("tests/test_text_insight_wandb.py")
    if answers["mixed_precision"] != "yes":
        paths.append("tests/test_amp.py")
    if multi_gpu not in ("ddp", "both"):
        paths.append(f"{package}/runs/distributed.py")
        paths.append(f"{package}/launch.py")
        paths.append("tests/test_distributed.py")
        paths.append("tests/test_text_distributed.py")
        paths.append("slurm")
    if multi_gpu not in ("dp", "both"):
        paths.append(f"{package}/runs/data_parallel.py")
        paths.append("tests/test_data_parallel.py")
    if answers["onnx_export"] != "yes":
        paths += [f"{package}/export.py", f"{package}/runs/onnx_model.py"]
        paths.append(f"{package}/loggers/onnx_export.py")
        paths += ["tests/test_export.py", "tests/test_predict_onnx.py", "tests/test_text_export.py"]
    if answers["sweeps"] != "yes":
        paths += [f"{package}/sweep.py", f"{package}/sweeps"]
        paths += ["configs/sweep.yaml", "configs/wandb_sweep.yaml"]
        paths += ["tests/test_sweep.py", "tests/test_wandb_sweep.py"]
    if answers["insight"] != "yes":
        paths.append(f"{package}/insight")
        paths += ["tests/test_cam.py", "tests/test_cam_tensorboard.py", "tests/test_cam_wandb.py"]
        paths += ["tests/test_insight.py", "tests/test_insight_tensorboard.py"]
        paths += ["tests/test_insight_wandb.py", "tests/offline_wandb.py"]
        paths += ["tests/test_text_insight.py", "tests/test_text_insight_tensorboard.py"]
        paths.append("tests/test_text_insight_wandb.py")
        if logger not in ("tensorboard", "both"):  # nothing else draws class names
            paths += [f"{package}/loggers/pictures.py", "tests/test_pictures.py"]
    if answers["ci"] != "github":
        paths.append(".github")
    if answers["pre_commit"] != "yes":
        paths.append(".pre-commit-config.yaml")
    return paths


TASK_TEST_PREFIXES = {"text_classification": "test_text_"}
# Each task's default recipe, for train --config.
TASK_RECIPES = {"image_classification": "digits.yaml", "text_classification": "languages.yaml"}
# The modules only one task uses, by path inside the package.
TASK_MODULES = {
    "image_classification": (
        "data/class_folders.py",
        "data/image_check.py",
        "data/image_datasets.py",
        "data/image_files.py",
        "data/transforms.py",
        "insight/cam.py",
    ),
    "text_classification": (
        "data/bucketing.py",
        "data/text_datasets.py",
        "data/text_files.py",
        "data/text_tables.py",
        "data/tokenizer.py",
    ),
}


def other_tasks_paths(answers: dict, package: Path) -> list[Path]:
    """The task packages not chosen, and the dataset and model files registered for them."""
    chosen = answers["task"]
    paths = [
        folder
        for folder in (package / "tasks").iterdir()
        if (folder / "__init__.py").exists() and folder.name != chosen
    ]
    for registry in ("datasets", "models"):
        for module in (package / registry).glob("*.py"):
            declared = re.search(r'\btask="(\w+)"', module.read_text(encoding="utf-8"))
            if declared and declared.group(1) != chosen:
                paths.append(module)
    for task, modules in TASK_MODULES.items():
        if task != chosen:
            paths += [package / module for module in modules]
            paths.append(Path("configs") / TASK_RECIPES[task])
    return paths + other_tasks_tests(chosen, Path("tests"))


def other_tasks_tests(chosen: str, tests: Path) -> list[Path]:
    """The generated tests of the tasks not chosen: a task's are named test_<its prefix>*.py,
    image classification's (which came first) are all the others."""
    own_prefix = TASK_TEST_PREFIXES.get(chosen)
    other_prefixes = tuple(prefix for task, prefix in TASK_TEST_PREFIXES.items() if task != chosen)
    return [
        path
        for path in tests.glob("test_*.py")
        if (own_prefix is not None and not path.name.startswith(own_prefix))
        or (own_prefix is None and path.name.startswith(other_prefixes))
    ]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def write_license(answers: dict) -> None:
    licenses = Path("licenses")
    if answers["license"] != "none":
        (licenses / f"{answers['license']}.txt").replace("LICENSE")
    shutil.rmtree(licenses)


def configured_git_value(key: str) -> str | None:
    """The value git resolves for `key` from the user's own configuration, if any."""
    try:
        result = subprocess.run(["git", "config", key], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() or None


def commit_identity(answers: dict) -> list[str]:
    """`-c` options for the first commit: the user's git identity where git has one, the
    answers' author for whatever part it lacks (git would refuse to commit without one)."""
    fallback = {"user.name": answers["author_name"], "user.email": answers["author_email"]}
    options = []
    for key, value in fallback.items():
        if configured_git_value(key) is None:
            options += ["-c", f"{key}={value}"]
    return options


def init_git(answers: dict) -> None:
    identity = commit_identity(answers)
    commands = [
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", "add", "--all"],
        [
            "git",
            *identity,
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            "Initial commit from torch-template",
        ],
    ]
    for command in commands:
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            print(f"WARNING: git set-up skipped ({detail.strip()}); run git init yourself")
            return


def next_steps(answers: dict) -> str:
    slug = answers["project_slug"]
    return "\n".join(
        [
            f"Created {slug}. Next steps:",
            f"  cd {slug}",
            "  python -m venv .venv && . .venv/bin/activate",
            "  make install",
            f"  python -m {slug}.train --epochs 5",
            "  make test",
        ]
    )


def main() -> int:
    for path in unselected_paths(ANSWERS):
        remove(Path(path))
    for path in other_tasks_paths(ANSWERS, Path("src") / ANSWERS["project_slug"]):
        remove(path)
    write_license(ANSWERS)
    if ANSWERS["init_git"] == "yes":
        init_git(ANSWERS)
    print(next_steps(ANSWERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
