"""The template's options, read from cookiecutter.json, and what each combination implies."""

import collections
import itertools
import json
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
OPTIONS = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
CODE_SHAPING = ("logger", "mixed_precision", "multi_gpu", "onnx_export")
CHOICE_OPTIONS = {
    name: values
    for name, values in OPTIONS.items()
    if isinstance(values, list) and not name.startswith("_")
}
SLUG = "image_classifier"
ALL_ON = {"logger": "both", "mixed_precision": "yes", "multi_gpu": "both", "onnx_export": "yes"}
ALL_OFF = {"logger": "none", "mixed_precision": "no", "multi_gpu": "none", "onnx_export": "no"}
# Options the template's workflow gives each value of in turn along its pairwise rows: they
# choose a task, extras or an interpreter, not code the code-shaping options cross.
ROW_OPTIONS = ("task", "sweeps", "insight", "python_version")
# The template suite's shards: the workflow runs each as a job of its own (make test with
# PYTEST_ARGS=--shard NAME); every test module is in exactly one.
SHARDS = {
    "renders": (
        "test_render.py",
        "test_options.py",
        "test_hooks.py",
        "test_template_sources.py",
        "test_architecture_doc.py",
        "test_security.py",
        "test_project_tooling.py",
    ),
    "training": (
        "test_train_matrix.py",
        "test_project_suites.py",
        "test_task_seam.py",
        "test_text_task.py",
        "test_extending.py",
        "test_reference_metrics.py",
        "test_kept_checkpoints.py",
    ),
    "behaviour": (
        "test_bad_input.py",
        "test_engine.py",
        "test_observability.py",
        "test_run_folders.py",
        "test_photo_folders.py",
        "test_photos.py",
        "test_readme_commands.py",
        "test_forkserver.py",
        "test_gpu_check.py",
    ),
    "processes": ("test_preemption.py", "test_faults.py", "test_slurm.py"),
}
# Tiers of their own, outside make test and its shards (make test-pythons).
OWN_TIERS = ("test_python_versions.py",)


def code_shaping_combinations() -> list[dict]:
    values = [CHOICE_OPTIONS[name] for name in CODE_SHAPING]
    return [dict(zip(CODE_SHAPING, combo, strict=True)) for combo in itertools.product(*values)]


def combination_id(combo: dict) -> str:
    return "-".join(f"{name}={combo[name]}" for name in CODE_SHAPING)


def uses_ddp(combo: dict) -> bool:
    return combo["multi_gpu"] in ("ddp", "both")


def uses_dp(combo: dict) -> bool:
    return combo["multi_gpu"] in ("dp", "both")


def uses_tensorboard(combo: dict) -> bool:
    return combo["logger"] in ("tensorboard", "both")


def uses_wandb(combo: dict) -> bool:
    return combo["logger"] in ("wandb", "both")


def expected_files(answers: dict) -> set[str]:
    """The exact file set a rendered project must have (written independently of the hook)."""
    package = f"src/{answers['project_slug']}"
    files = {
        ".gitignore",
        "Makefile",
        "README.md",
        "ARCHITECTURE.md",
        "pyproject.toml",
        "tests/conftest.py",
        f"{package}/__init__.py",
        f"{package}/errors.py",
        f"{package}/train.py",
        f"{package}/evaluate.py",
        f"{package}/predict.py",
        f"{package}/config/__init__.py",
        f"{package}/config/schema.py",
        f"{package}/config/parser.py",
        f"{package}/config/flags.py",
        f"{package}/config/extras.py",
        f"{package}/data/__init__.py",
        f"{package}/data/spec.py",
        f"{package}/data/labels.py",
        f"{package}/data/sampling.py",
        f"{package}/data/loaders.py",
        f"{package}/datasets/__init__.py",
        f"{package}/models/__init__.py",
        f"{package}/tasks/__init__.py",
        f"{package}/tasks/base.py",
        f"{package}/tasks/classification.py",
        f"{package}/runs/__init__.py",
        f"{package}/runs/checkpoint.py",
        f"{package}/runs/folder.py",
        f"{package}/runs/preemption.py",
        f"{package}/runs/runtime.py",
        f"{package}/training/__init__.py",
        f"{package}/training/fit.py",
        f"{package}/training/loop.py",
        f"{package}/training/hooks.py",
        f"{package}/training/validation.py",
        f"{package}/training/model_setup.py",
        f"{package}/training/resume.py",
        f"{package}/training/optimisation.py",
        f"{package}/training/ema.py",
        f"{package}/training/early_stopping.py",
        f"{package}/training/precision.py",
        f"{package}/training/report.py",
        f"{package}/loggers/__init__.py",
        f"{package}/loggers/base.py",
        f"{package}/loggers/metrics_file.py",
    }
    if answers.get("task", "image_classification") == "text_classification":
        files |= text_task_files(answers, package)
    else:
        files |= image_task_files(answers, package)
    if answers["license"] != "none":
        files.add("LICENSE")
    if uses_tensorboard(answers):
        files.add(f"{package}/loggers/tensorboard_logger.py")
    if uses_wandb(answers):
        files.add(f"{package}/loggers/wandb_logger.py")
    if answers["sweeps"] == "yes":
        files |= {f"{package}/sweep.py", "configs/sweep.yaml"}
        files |= {f"{package}/sweeps/{name}.py" for name in ("__init__", "space", "study", "trial")}
        if uses_wandb(answers):
            files.add("configs/wandb_sweep.yaml")
    if answers["insight"] == "yes":
        files |= {f"{package}/insight/{name}.py" for name in ("__init__", "finished_run")}
        if uses_wandb(answers):
            files.add("tests/offline_wandb.py")
    if answers["insight"] == "yes" or uses_tensorboard(answers):  # class names on pictures
        files.add(f"{package}/loggers/pictures.py")
    if uses_ddp(answers):
        files |= {f"{package}/runs/distributed.py", f"{package}/launch.py", "slurm/train.sbatch"}
    if uses_dp(answers):
        files.add(f"{package}/runs/data_parallel.py")
    if answers["onnx_export"] == "yes":
        files |= {f"{package}/export.py", f"{package}/runs/onnx_model.py"}
        files.add(f"{package}/loggers/onnx_export.py")
    if answers["ci"] == "github":
        files.add(".github/workflows/ci.yml")
    if answers["pre_commit"] == "yes":
        files.add(".pre-commit-config.yaml")
    return files


def image_task_files(answers: dict, package: str) -> set[str]:
    files = {
        "configs/digits.yaml",
        "tests/test_train.py",
        "tests/test_config.py",
        "tests/test_bad_input.py",
        "tests/test_data.py",
        "tests/test_engine.py",
        "tests/test_evaluate.py",
        "tests/test_predict.py",
        "tests/test_image_folder.py",
        "tests/test_models.py",
        "tests/test_recipe.py",
        "tests/test_imbalanced.py",
        f"{package}/data/transforms.py",
        f"{package}/data/image_datasets.py",
        f"{package}/data/image_files.py",
        f"{package}/data/class_folders.py",
        f"{package}/data/image_check.py",
        f"{package}/datasets/digits.py",
        f"{package}/datasets/fake.py",
        f"{package}/datasets/cifar10.py",
        f"{package}/datasets/image_folder.py",
        f"{package}/models/simple_cnn.py",
        f"{package}/models/mlp.py",
        f"{package}/models/resnet18.py",
        f"{package}/tasks/image_classification/__init__.py",
        f"{package}/tasks/image_classification/task.py",
        f"{package}/tasks/image_classification/prediction.py",
    }
    if uses_tensorboard(answers):
        files.add("tests/test_tensorboard.py")
    if answers["sweeps"] == "yes":
        files.add("tests/test_sweep.py")
        if uses_wandb(answers):
            files.add("tests/test_wandb_sweep.py")
    if answers["insight"] == "yes":
        files.add(f"{package}/insight/cam.py")
        files |= {"tests/test_cam.py", "tests/test_insight.py"}
        if uses_tensorboard(answers):
            files |= {"tests/test_insight_tensorboard.py", "tests/test_cam_tensorboard.py"}
        if uses_wandb(answers):
            files |= {"tests/test_insight_wandb.py", "tests/test_cam_wandb.py"}
    if answers["insight"] == "yes" or uses_tensorboard(answers):
        files.add("tests/test_pictures.py")
    if answers["mixed_precision"] == "yes":
        files.add("tests/test_amp.py")
    if uses_ddp(answers):
        files.add("tests/test_distributed.py")
    if uses_dp(answers):
        files.add("tests/test_data_parallel.py")
    if answers["onnx_export"] == "yes":
        files |= {"tests/test_export.py", "tests/test_predict_onnx.py"}
    return files


def text_task_files(answers: dict, package: str) -> set[str]:
    files = {
        "configs/languages.yaml",
        "tests/test_text_files.py",
        "tests/test_text_models.py",
        "tests/test_text_data.py",
        "tests/test_text_train.py",
        "tests/test_text_bad_input.py",
        f"{package}/data/bucketing.py",
        f"{package}/data/text_datasets.py",
        f"{package}/data/text_files.py",
        f"{package}/data/text_tables.py",
        f"{package}/data/tokenizer.py",
        f"{package}/datasets/languages.py",
        f"{package}/datasets/text_files.py",
        f"{package}/models/bag_of_embeddings.py",
        f"{package}/models/bigru.py",
        f"{package}/models/transformer.py",
        f"{package}/tasks/text_classification/__init__.py",
        f"{package}/tasks/text_classification/task.py",
        f"{package}/tasks/text_classification/prediction.py",
    }
    if answers["insight"] == "yes":
        files.add("tests/test_text_insight.py")
        if uses_tensorboard(answers):
            files.add("tests/test_text_insight_tensorboard.py")
        if uses_wandb(answers):
            files.add("tests/test_text_insight_wandb.py")
    if uses_ddp(answers):
        files.add("tests/test_text_distributed.py")
    if answers["onnx_export"] == "yes":
        files.add("tests/test_text_export.py")
    return files


def value_pairs(combo: dict) -> set[tuple]:
    """Every pair of (option, value) settings that one combination exercises together."""
    settings = sorted(combo.items())
    return set(itertools.combinations(settings, 2))


def pairwise_combinations(start: list[dict]) -> list[dict]:
    """`start` plus the fewest combinations that make every value of each code-shaping option
    meet every value of each other one: as many as the two largest options have value pairs
    (16 of the 64). A depth-first search: each step covers the first pair still uncovered."""
    sizes = sorted(len(CHOICE_OPTIONS[name]) for name in CODE_SHAPING)
    budget = sizes[-1] * sizes[-2] - len(start)
    uncovered = set().union(*map(value_pairs, code_shaping_combinations()))
    uncovered -= set().union(*map(value_pairs, start))
    found = covering_search(sorted(uncovered), budget)
    assert found is not None, f"no all-pairs set of {len(start) + budget} combinations"
    return [*start, *found]


def covering_search(uncovered: list[tuple], budget: int) -> list[dict] | None:
    if not uncovered:
        return []
    if budget < most_pairs_of_one_option_pair(uncovered):
        return None  # a combination covers one value pair of each two options, no more
    (first, second) = uncovered[0]
    for combo in code_shaping_combinations():
        if combo[first[0]] == first[1] and combo[second[0]] == second[1]:
            covered = value_pairs(combo)
            rest = covering_search([p for p in uncovered if p not in covered], budget - 1)
            if rest is not None:
                return [combo, *rest]
    return None


def most_pairs_of_one_option_pair(pairs: list[tuple]) -> int:
    counts = collections.Counter((first[0], second[0]) for first, second in pairs)
    return max(counts.values())


def workflow_rows() -> list[dict]:
    """The template workflow's combination jobs: the suite's all-pairs set of the code-shaping
    options (every value of each meets every value of each other one), with every value of each
    ROW_OPTIONS option in turn along the rows."""
    rows = [dict(row) for row in pairwise_combinations([ALL_ON, ALL_OFF])]  # ALL_ON stays as it is
    for name in ROW_OPTIONS:
        values = CHOICE_OPTIONS[name]
        for index, row in enumerate(rows):
            row[name] = values[index % len(values)]
    return rows
