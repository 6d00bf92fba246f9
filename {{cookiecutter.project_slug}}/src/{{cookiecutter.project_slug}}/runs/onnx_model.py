"""model.onnx: written from a checkpoint with the axes the task lets vary (the batch's),
checked by onnx and compared in onnxruntime on the task's example inputs; read back by predict.

The file is self-contained: weights inside, and metadata_props carrying what a service needs
to use it, as JSON values: the task, the class names and the whole data spec (a text model's
tokenizer JSON, vocabulary size and longest sequence; an image model's channels, size and
normalisation), plus an image model's input size, resize size, mean and std as keys of their own.
"""

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from ..config.parser import saved_config
from ..data.spec import DataSpec
from ..datasets import dataset_info
from ..errors import UserError, first_line, prepare_output_file
from ..models import build_model
from ..tasks import build_task, declaration
from ..tasks.base import Task
from .checkpoint import load_checkpoint, load_model_weights

# The keys of an image model's preprocessing, all that files exported before the data spec
# was recorded ("data_spec") hold.
IMAGE_KEYS = ("class_names", "input_size", "resize_size", "mean", "std")


class OnnxModel:
    """A model.onnx in onnxruntime, on the CPU or a CUDA device."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.session = open_session(path, device)
        self.spec = recorded_spec(path, self.session)
        self.task_name = recorded_task(self.session)

    def outputs(self, inputs):
        """The model's outputs for an input batch: a tensor, or a list of them in the file's
        order when it has several."""
        names = [graph_input.name for graph_input in self.session.get_inputs()]
        arrays = self.session.run(None, input_feed(names, inputs))
        outputs = [torch.from_numpy(array) for array in arrays]
        return outputs[0] if len(outputs) == 1 else outputs


def flat_tensors(values) -> list[torch.Tensor]:
    """A batch's tensors in the order ONNX export flattens them: dict values, list items."""
    if isinstance(values, torch.Tensor):
        return [values]
    items = values.values() if isinstance(values, dict) else values
    return [tensor for item in items for tensor in flat_tensors(item)]


def input_feed(names, inputs) -> dict[str, np.ndarray]:
    """onnxruntime's inputs: each of the model's input names with its tensor of the batch."""
    tensors = flat_tensors(inputs)
    return {name: tensor.numpy() for name, tensor in zip(names, tensors, strict=True)}


def open_session(path: Path, device: torch.device) -> onnxruntime.InferenceSession:
    if not path.is_file():
        raise UserError(f"model {path} does not exist: pass a model.onnx written by export")
    providers = execution_providers(device)
    try:
        return onnxruntime.InferenceSession(path, providers=providers)
    except Exception as error:  # onnxruntime raises its own types for files it cannot read
        reason = first_line(error)
        raise UserError(
            f"{path} is not an ONNX model onnxruntime can load ({reason}): pass a model.onnx "
            "written by export"
        ) from None


def execution_providers(device: torch.device) -> list:
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise UserError(
            f"--device {device}: this onnxruntime cannot use CUDA (install onnxruntime-gpu): "
            "use --device cpu"
        )
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def recorded_spec(path: Path, session: onnxruntime.InferenceSession) -> DataSpec:
    """The DataSpec that export wrote into the file: class names and preprocessing."""
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        if "data_spec" in metadata:
            return DataSpec.from_dict(dict(json.loads(metadata["data_spec"])))
        return image_spec({key: json.loads(metadata[key]) for key in IMAGE_KEYS})
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{path} does not record its classes and preprocessing (data_spec) in its metadata: "
            "export the checkpoint with this project's export command"
        ) from None


def image_spec(values: dict) -> DataSpec:
    """An image model's spec from its preprocessing's own keys."""
    channels, size, _ = values["input_size"]
    return DataSpec(
        tuple(values["class_names"]),
        channels,
        size,
        tuple(values["mean"]),
        tuple(values["std"]),
        values["resize_size"],
    )


def recorded_task(session: onnxruntime.InferenceSession) -> str | None:
    """The task export recorded; None in a file exported before it recorded one."""
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        task = json.loads(metadata.get("task", "null"))
    except ValueError:
        return None
    return task if isinstance(task, str) else None


# Largest absolute difference allowed between PyTorch and onnxruntime float32 outputs.
TOLERANCE = 1e-4
CHECK_BATCH_SIZES = (1, 7)
EXAMPLE_BATCH_SIZE = 2  # the exporter would take an axis of size 1 for a constant
# The optimiser's loggers, which warn of folds and deduplications it skips.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir")
# How the exporter's notes about itself begin (a recurrent model's lengths, its flat weights,
# axes that keep their names).
EXPORTER_WARNINGS = (
    "_check_is_size will be removed",
    "The tensor attributes .* were assigned during export",
    "# The axis name: .* will not be used",
)


def export_onnx(model: nn.Module, task: Task, spec: DataSpec, path: Path) -> None:
    """The task says the model's inputs and outputs, their names and the axes that vary."""
    model.eval()
    signature = task.onnx_signature()
    with exporter_notes_silenced():
        torch.onnx.export(
            model,
            # The empty dict: no keyword arguments (else a dict input would be taken for them).
            (task.example_input(EXAMPLE_BATCH_SIZE), {}),
            path,
            input_names=list(signature.inputs),
            output_names=list(signature.outputs),
            dynamic_shapes=signature.dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    add_metadata(path, task, spec)


@contextlib.contextmanager
def exporter_notes_silenced():
    """The console kept to our own lines: the exporter logs its progress, and it and its
    optimiser warn of their own workings, which the user can do nothing about. (The loggers
    stay quieter after: nothing but export writes to them.)"""
    logging.getLogger("torch.onnx").setLevel(logging.WARNING)
    for name in EXPORTER_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        for message in EXPORTER_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


def add_metadata(path: Path, task: Task, spec: DataSpec) -> None:
    model = onnx.load(path)
    for key, value in recorded_metadata(task, spec).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, path)


def recorded_metadata(task: Task, spec: DataSpec) -> dict:
    metadata = {
        "task": task.declaration.name,
        "class_names": list(spec.class_names),
        "data_spec": spec.to_dict(),
    }
    if spec.image_size is not None:  # the keys that services written for image models read
        metadata |= {
            "input_size": [spec.in_channels, spec.image_size, spec.image_size],
            "resize_size": spec.resize_size,
            "mean": list(spec.mean),
            "std": list(spec.std),
        }
    return metadata


def largest_difference(model: nn.Module, task: Task, path: Path) -> dict[int, float]:
    """Run PyTorch and onnxruntime on the same random batches; the max |difference| per size."""
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    signature = task.onnx_signature()
    differences = {}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for batch_size in CHECK_BATCH_SIZES:
            inputs = task.example_input(batch_size)
            expected = flat_tensors(model(inputs))
            actual = session.run(list(signature.outputs), input_feed(signature.inputs, inputs))
            differences[batch_size] = max(
                float(np.abs(exported - traced.numpy()).max())
                for exported, traced in zip(actual, expected, strict=True)
            )
    return differences


def export_and_verify(
    model: nn.Module,
    task: Task,
    spec: DataSpec,
    path: Path,
    report: Callable[[str], None] = print,
) -> None:
    """Write `path` only once the export is verified: a failed export leaves the old file."""
    model = model.cpu().float().eval()
    partial = path.with_name(f"{path.name}.partial")
    try:
        export_onnx(model, task, spec, partial)
        differences = largest_difference(model, task, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    figures = ", ".join(f"batch {size}: {diff:.2e}" for size, diff in differences.items())
    if max(differences.values()) > TOLERANCE:
        partial.unlink()
        raise UserError(
            f"ONNX output of {path} differs from PyTorch by more than {TOLERANCE:g} ({figures}): "
            "the export is not faithful, check for unsupported operators"
        )
    os.replace(partial, path)
    report(f"exported {path}; onnxruntime max |diff| vs PyTorch ({figures}) <= {TOLERANCE:g}")


def prepare_onnx_output(output: Path, checkpoint: Path) -> None:
    """The checks of any --output file, then the name predict needs; a refused name leaves no
    folder behind."""
    missing = [folder for folder in output.parents if not folder.exists()]
    prepare_output_file(output, "model.onnx", checkpoint)
    if output.suffix.lower() != ".onnx":
        for folder in missing:  # deepest first
            folder.rmdir()
        raise UserError(
            f"--output {output} must end in .onnx, which is how predict recognises an ONNX "
            f"model: give e.g. {output.with_suffix('.onnx')}"
        )


def export_checkpoint(
    checkpoint_path: Path, output: Path, report: Callable[[str], None] = print
) -> None:
    prepare_onnx_output(output, checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    task_name = exported_task(checkpoint, checkpoint_path)
    config = saved_config(checkpoint["config"])
    spec = DataSpec.from_dict(checkpoint["data_spec"])
    model = build_model(config.model.model, spec)
    load_model_weights(model, checkpoint, checkpoint_path, for_inference=True)
    task = build_task(task_name, config, spec, None, torch.device("cpu"))
    export_and_verify(model, task, spec, output, report)


def exported_task(checkpoint: dict, checkpoint_path: Path) -> str:
    """The checkpoint's task, when it declares ONNX export."""
    task = dataset_info(checkpoint["config"]["dataset"]).task
    if "onnx" not in declaration(task).supports:
        raise UserError(
            f"checkpoint {checkpoint_path} is a {task} model, which this project does not export "
            "to ONNX: use the checkpoint itself"
        )
    return task
