"""The seam between the engine and a task: every call the engine makes about batches, losses
and metrics, and what evaluate, predict and export ask of a task. A batch is (inputs, targets),
each a tensor or any dict, list or tuple of them (the engine moves them to the device); what
they hold is the task's business."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset


class RunningSums:
    """A training epoch's running sums on the device: [loss x samples, one sum per
    train_metrics name, samples]. `add` takes each batch; `totals` has every batch added so
    far. The loop reads the totals only every --log-every updates, so a task may keep a few
    batches' figures and add them up together: a step then launches fewer small kernels."""

    def add(self, loss, outputs, targets) -> None:
        raise NotImplementedError

    def totals(self) -> torch.Tensor:
        raise NotImplementedError


class Validation:
    """Scores accumulated over one pass of the validation split, reduced across DDP ranks."""

    def update(self, outputs, targets) -> None:
        raise NotImplementedError

    def compute(self) -> dict:
        """Every score by name: "val_loss" and the task's metrics as floats, plus whatever the
        task's reports and loggers read (per-class scores, predictions...)."""
        raise NotImplementedError


@dataclass(frozen=True)
class OnnxSignature:
    """How export lays out model.onnx: the names of the model's input tensors (example_input's,
    flattened in order: dict values, list items) and of its outputs, and `dynamic_shapes` as
    torch.onnx.export takes them: each input's varying axes, in example_input's structure."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_shapes: tuple


@dataclass(frozen=True)
class PredictInputs:
    """The files predict reads, as the task found them among the command line's paths."""

    files: list  # in order, the names of the CSV's rows (paths, or file:line for texts)
    ignored: list[Path]  # the other files and folders passed over, named on stderr
    dataset: Dataset  # item i: (files[i] as a model input, "") or (None, why it cannot be read)


class Task:
    """A kind of problem, as the engine sees it. Built once per run (tasks.build_task)."""

    declaration = None  # its TaskDeclaration (tasks/__init__.py)

    # The running training sums a task keeps besides the loss and the sample count, as
    # train_<name> means in metrics.jsonl.
    train_metrics: tuple[str, ...] = ()
    # Per-class (or other non-scalar) validation scores that metrics.jsonl records.
    recorded_extras: tuple[str, ...] = ()
    # predict's CSV columns after "path", and how its messages name one input file and several.
    prediction_columns: tuple[str, ...] = ()
    input_names: tuple[str, str] = ("an input", "inputs")
    # How the model's weights and 4-D input batches are laid out in memory.
    memory_format: torch.memory_format = torch.contiguous_format

    def collate_fn(self):
        """Makes a training batch from the seeded samples (sample, target, seed)."""
        raise NotImplementedError

    def training_sampler(self, train: Dataset, rank: int, world_size: int):
        """The training split's sampler of (index, sample seed) pairs, with the engine's
        set_epoch(epoch, start), or None for the engine's (shuffled or class-balanced)."""
        return None

    def eval_collate_fn(self):
        """Makes a validation or evaluation batch from (sample, target) pairs; None: stack them
        (torch's default_collate)."""
        return None

    def forward(self, model, inputs):
        """The model's outputs for a batch's inputs (validation, inference)."""
        raise NotImplementedError

    def training_loss(self, model, inputs, targets):
        """(loss, outputs) of a training batch: the forward pass and the loss, under autocast."""
        raise NotImplementedError

    def running_sums(self, start: list[float] | None, device: torch.device) -> RunningSums:
        """A training epoch's running sums, from `start` (those of an epoch stopped midway)
        or zeros."""
        raise NotImplementedError

    def validation(self, keep_predictions: bool) -> Validation:
        raise NotImplementedError

    def shown_sample(self, dataset: Dataset, index: int):
        """Sample `index` of the validation `dataset` as the end-of-run embeddings and mistakes
        show it beside its classes: a picture, as a (C, H, W) float tensor with values in
        [0, 1], or a text, as a string."""
        raise NotImplementedError(f"{type(self).__name__} does not say how a sample is shown")

    def example_input(self, batch_size: int = 1):
        """An input batch of `batch_size` of the shapes the model takes (the summary's 1; ONNX
        export's several, so that the batch axis stays free)."""
        raise NotImplementedError

    def onnx_signature(self) -> OnnxSignature:
        """Only for a task that declares "onnx"."""
        raise NotImplementedError

    def report(self, scores: dict) -> dict:
        """The evaluate command's report of a Validation's scores, as JSON-ready values."""
        raise NotImplementedError

    def format_report(self, report: dict) -> str:
        """The report as the evaluate command prints it (`report` also holds "split",
        "weights" and the sample count under input_names[1]: "images", "texts")."""
        raise NotImplementedError

    def predict_inputs(self, sources: list[str]) -> PredictInputs:
        """The inputs to predict among the command line's arguments (files, folders, list
        files; texts); a UserError for a source that holds none."""
        raise NotImplementedError

    def predict_batch(self, inputs: list):
        """One model input batch of readable files' inputs (PredictInputs.dataset items)."""
        raise NotImplementedError

    def prediction_rows(self, outputs, top_k: int) -> list[tuple[list[str], str]]:
        """For each input of a batch, its CSV cells (prediction_columns) and its console line."""
        raise NotImplementedError
