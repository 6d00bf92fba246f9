"""Tasks: what one kind of problem (image classification, ...) asks of the engine.

Each task is a package: its `__init__.py` declares the task (this imports no torch, so the
flags can read it instantly) and its `task.py` implements `base.Task`, which is all the engine
knows of batches, losses and metrics. A dataset names the task that trains on it.
"""

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass

# The optional parts of a run a task may support, and the flags that ask for them.
OPTIONAL_PARTS = {
    "mixup": ("mixup_alpha",),
    "cutmix": ("cutmix_alpha",),
    "label_smoothing": ("label_smoothing",),
    "class_weights": ("class_weights",),
    "balanced_sampling": ("balanced_sampling",),
    "embeddings": ("embeddings",),
    "mistakes": ("mistakes",),
    "onnx": ("export_onnx",),
}


@dataclass(frozen=True)
class PredictHelp:
    """How predict's --help speaks of the task's inputs: one of them (`unit`: image, text),
    what it reads them from (`sources`: image files, texts) and what its arguments may be."""

    unit: str = "input"
    sources: str = "inputs"
    arguments: str = "the inputs to classify"


@dataclass(frozen=True)
class TaskDeclaration:
    """`metrics`: the validation metrics --monitor may watch, each "min" or "max" (val_loss is
    always one); `headline`: the one every epoch line shows and --monitor defaults to;
    `fixed_on_resume`: the task's data flags a resumed run must keep (they shape the model's
    inputs); `predict_help`: how predict's --help names its inputs."""

    name: str
    metrics: Mapping[str, str]
    headline: str
    supports: frozenset[str]
    fixed_on_resume: tuple[str, ...] = ()
    predict_help: PredictHelp = PredictHelp()


def task_names() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(__path__) if module.ispkg)


def declaration(name: str) -> TaskDeclaration:
    return importlib.import_module(f"{__name__}.{name}").DECLARATION


def build_task(name: str, config, spec, train_split, device):
    """The task's implementation (base.Task) for a run of `config` on data `spec`, whose
    training split some losses weigh (--class-weights)."""
    module = importlib.import_module(f"{__name__}.{name}.task")
    return module.build(config, spec, train_split, device)
