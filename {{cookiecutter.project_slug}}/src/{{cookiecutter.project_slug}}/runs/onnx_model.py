"""predict with an exported model.onnx: onnxruntime, and the task, preprocessing and class
names that export.py recorded in the file's metadata_props."""

import json
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from ..data.spec import DataSpec
from ..errors import UserError, first_line

RECORDED = ("class_names", "input_size", "resize_size", "mean", "std")


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
        values = {key: json.loads(metadata[key]) for key in RECORDED}
        channels, size, _ = values["input_size"]
        return DataSpec(
            tuple(values["class_names"]),
            channels,
            size,
            tuple(values["mean"]),
            tuple(values["std"]),
            values["resize_size"],
        )
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{path} does not record its classes and preprocessing ({', '.join(RECORDED)}) in "
            "its metadata: export the checkpoint with this project's export command"
        ) from None


def recorded_task(session: onnxruntime.InferenceSession) -> str | None:
    """The task export recorded; None in a file exported before it recorded one."""
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        task = json.loads(metadata.get("task", "null"))
    except ValueError:
        return None
    return task if isinstance(task, str) else None
