"""predict with an exported model.onnx: onnxruntime, and the preprocessing and class names that
export.py recorded in the file's metadata_props."""

import json
from pathlib import Path

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

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(["logits"], {"images": images.numpy()})
        return torch.from_numpy(logits).float().softmax(dim=1)


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
