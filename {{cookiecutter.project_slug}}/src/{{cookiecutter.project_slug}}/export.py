"""ONNX export with a dynamic batch axis, checked by onnx and compared in onnxruntime.

The file is self-contained: weights inside, and metadata_props carrying what a service needs
to use it (class names, input size, resize size, mean and std, as JSON values).
"""

import argparse
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from .config.flags import ConfigParser
from .config.schema import Config
from .data.spec import DataSpec
from .datasets import dataset_info
from .errors import UserError, prepare_output_file, run_reporting_user_errors
from .loggers.base import RunLogger, register_logger
from .models import build_model
from .runs.checkpoint import load_checkpoint, load_model_weights
from .tasks import declaration

# Largest absolute difference allowed between PyTorch and onnxruntime float32 logits.
TOLERANCE = 1e-4
CHECK_BATCH_SIZES = (1, 7)


def export_onnx(model: nn.Module, spec: DataSpec, path: Path) -> None:
    model.eval()
    example = torch.randn(2, spec.in_channels, spec.image_size, spec.image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter logs its progress at INFO; keep the console to our own lines.
    logging.getLogger("torch.onnx").setLevel(logging.WARNING)
    torch.onnx.export(
        model,
        (example,),
        path,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    add_metadata(path, spec)


def add_metadata(path: Path, spec: DataSpec) -> None:
    model = onnx.load(path)
    for key, value in preprocessing_metadata(spec).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, path)


def preprocessing_metadata(spec: DataSpec) -> dict:
    return {
        "class_names": list(spec.class_names),
        "input_size": [spec.in_channels, spec.image_size, spec.image_size],
        "resize_size": spec.resize_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
    }


def largest_difference(model: nn.Module, spec: DataSpec, path: Path) -> dict[int, float]:
    """Run PyTorch and onnxruntime on the same random batches; the max |difference| per size."""
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    differences = {}
    with torch.no_grad():
        for batch_size in CHECK_BATCH_SIZES:
            shape = (batch_size, spec.in_channels, spec.image_size, spec.image_size)
            images = torch.randn(shape, generator=generator)
            expected = model(images).numpy()
            (actual,) = session.run(["logits"], {"images": images.numpy()})
            differences[batch_size] = float(np.abs(actual - expected).max())
    return differences


def export_and_verify(
    model: nn.Module, spec: DataSpec, path: Path, report: Callable[[str], None] = print
) -> None:
    """Write `path` only once the export is verified: a failed export leaves the old file."""
    model = model.cpu().float().eval()
    partial = path.with_name(f"{path.name}.partial")
    try:
        export_onnx(model, spec, partial)
        differences = largest_difference(model, spec, partial)
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


def build_parser() -> argparse.ArgumentParser:
    parser = ConfigParser(
        prog="export", description="Export a checkpoint to ONNX and verify it in onnxruntime."
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="last.pt or best.pt")
    parser.add_argument("--output", type=Path, default=Path("model.onnx"), help="ONNX file")
    return parser


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
    check_task_exports(checkpoint, checkpoint_path)
    spec = DataSpec.from_dict(checkpoint["data_spec"])
    model = build_model(checkpoint["config"]["model"], spec)
    load_model_weights(model, checkpoint, checkpoint_path, for_inference=True)
    export_and_verify(model, spec, output, report)


def check_task_exports(checkpoint: dict, checkpoint_path: Path) -> None:
    task = dataset_info(checkpoint["config"]["dataset"]).task
    if "onnx" not in declaration(task).supports:
        raise UserError(
            f"checkpoint {checkpoint_path} is a {task} model, which this project does not export "
            "to ONNX: use the checkpoint itself"
        )


@register_logger
class OnnxExport(RunLogger):
    """--export-onnx: the run's best.pt as <run folder>/model.onnx once training ends."""

    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        self.output = run_dir / "model.onnx" if config.features["export_onnx"] else None

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        if self.output is not None:
            export_checkpoint(best_checkpoint, self.output, logging.getLogger("train").info)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(lambda: export_checkpoint(args.checkpoint, args.output))


if __name__ == "__main__":
    raise SystemExit(main())
