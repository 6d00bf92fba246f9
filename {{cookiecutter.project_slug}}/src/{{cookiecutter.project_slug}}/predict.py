"""`python -m {{ cookiecutter.project_slug }}.predict`: a model's predictions for files, as a CSV.

The model is a checkpoint (best.pt, last.pt, or a run folder for its best.pt; with the weights
evaluate uses, the EMA's when the run kept one) or an exported model.onnx (runs/onnx_model.py).
Its task finds the files among the paths given, reads each as evaluation reads its data (with
the preprocessing and class names the model file records) and turns the model's outputs, scored
in batches, into the CSV's rows (tasks/base.py). Files that cannot be read are named on stderr
and skipped.
"""

import argparse
import csv
import importlib
import importlib.util
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .config.flags import (
    ConfigParser,
    DefaultsHelpFormatter,
    device_name,
    non_negative_int,
    positive_int,
)
from .config.parser import saved_config
from .config.schema import DEFAULT_DATASET
from .data.spec import DataSpec
from .datasets import dataset_info
from .errors import UserError, prepare_output_file, run_reporting_user_errors
from .models import build_model
from .runs.checkpoint import load_checkpoint, load_model_weights
from .runs.runtime import resolve_device, to_device
from .tasks import build_task, declaration, task_names
from .tasks.base import PredictInputs, Task

# Present only in projects generated with the onnx_export option.
ONNX_BACKEND = f"{__package__}.runs.onnx_model"
LISTED = 5  # file names quoted in one line


def build_parser() -> argparse.ArgumentParser:
    # The project's task (its default dataset's) names the inputs.
    inputs = declaration(dataset_info(DEFAULT_DATASET).task).predict_help
    parser = ConfigParser(
        prog="predict",
        description=f"Top-k classes of {inputs.sources} from a checkpoint or an exported "
        "model.onnx.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar=f"{inputs.unit.upper()}S", help=inputs.arguments
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="best.pt or last.pt, a run folder (its best.pt), or a model.onnx written by export "
        "(in projects generated with the onnx_export option)",
    )
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=5,
        help=f"classes per {inputs.unit}, at most the class count",
    )
    parser.add_argument("--output", type=Path, default=Path("predictions.csv"), help="CSV file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help=f"{inputs.unit}s per batch"
    )
    parser.add_argument(
        "--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto"
    )
    parser.add_argument(
        "--num-workers", type=non_negative_int, default=0, help=f"processes reading {inputs.unit}s"
    )
    return parser


@dataclass(frozen=True)
class Predictor:
    """A model to predict with: its task, the data it expects, and its outputs for an input
    batch."""

    task: Task
    spec: DataSpec
    outputs: Callable


def checkpoint_predictor(path: Path, device: torch.device) -> Predictor:
    """A checkpoint's model, with the weights evaluate uses (the EMA's when the run kept one)."""
    checkpoint = load_checkpoint(path)
    config = saved_config(checkpoint["config"])
    spec = DataSpec.from_dict(checkpoint["data_spec"])
    model = build_model(config.model.model, spec)
    load_model_weights(model, checkpoint, path, for_inference=True)
    model = model.to(device).eval()
    task = build_task(dataset_info(config.data.dataset).task, config, spec, None, device)

    @torch.inference_mode()
    def outputs(inputs):
        return task.forward(model, to_device(inputs, device))

    return Predictor(task, spec, outputs)


def onnx_predictor(path: Path, device: torch.device) -> Predictor:
    """A model.onnx: it records its task, preprocessing and class names, not its training
    recipe, which prediction does not use (the flags' defaults stand in)."""
    model = onnx_backend(path).OnnxModel(path, device)
    config = saved_config({})
    # A file exported before export recorded the task is a model of the default dataset's.
    name = model.task_name or dataset_info(config.data.dataset).task
    if name not in task_names():
        raise UserError(
            f"{path} is a {name} model, a task this project does not have: pass a model of "
            f"{', '.join(task_names())}"
        )
    return Predictor(build_task(name, config, model.spec, None, device), model.spec, model.outputs)


def model_file(path: Path) -> Path:
    """--checkpoint as given, or a run folder's best.pt."""
    if not path.is_dir():
        return path
    if (path / "best.pt").is_file():
        return path / "best.pt"
    if (path / "last.pt").is_file():
        raise UserError(
            f"run folder {path} has no best.pt: pass --checkpoint {path / 'last.pt'} or another "
            "run folder"
        )
    raise UserError(
        f"{path} holds no best.pt or last.pt, so is not a run folder: pass a run folder (not a "
        "folder of run folders), a best.pt, last.pt or model.onnx"
    )


def load_model(path: Path, device: torch.device) -> Predictor:
    if path.suffix.lower() == ".onnx":
        return onnx_predictor(path, device)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise UserError(
            f"{path} is truncated or not a PyTorch checkpoint, and not named *.onnx as an ONNX "
            "model must be: pass a best.pt, last.pt, run folder or model.onnx"
        )
    return checkpoint_predictor(path, device)


def onnx_backend(path: Path):
    if importlib.util.find_spec(ONNX_BACKEND) is None:
        raise UserError(
            f"{path} is an ONNX model, and predicting with one needs the onnx_export option, "
            "which this project was generated without: pass a best.pt, last.pt or run folder"
        )
    return importlib.import_module(ONNX_BACKEND)


def quoted(paths: list[Path]) -> str:
    shown = ", ".join(str(path) for path in paths[:LISTED])
    return shown + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


def as_list(samples: list) -> list:
    """A batch as it came: it may hold files that could not be read."""
    return samples


def scored_files(
    model: Predictor, inputs: PredictInputs, top_k: int, batch_size: int, num_workers: int
) -> Iterator[tuple[Path, tuple[list[str], str] | None, str]]:
    """(path, the task's CSV cells and console line, "") for each readable file, (path, None,
    why) for the others, in order."""
    loader = DataLoader(
        inputs.dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=as_list
    )
    files = iter(inputs.files)
    for batch in loader:
        rows = iter(batch_rows(model, [item for item, _ in batch if item is not None], top_k))
        for item, problem in batch:
            yield next(files), None if item is None else next(rows), problem


def batch_rows(model: Predictor, inputs: list, top_k: int) -> list[tuple[list[str], str]]:
    if not inputs:
        return []
    task = model.task
    return task.prediction_rows(model.outputs(task.predict_batch(inputs)), top_k)


def check_output(output: Path, model_path: Path, overwrite: bool) -> None:
    prepare_output_file(output, "predictions.csv", model_path)
    if output.exists() and not overwrite:
        raise UserError(
            f"--output {output} exists: pass --overwrite to replace it, or another --output"
        )


def write_csv(output: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    try:
        with open(output, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows(rows)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"cannot write {output} ({reason}): pick another --output") from None


def predicted_rows(
    model: Predictor, inputs: PredictInputs, args: argparse.Namespace
) -> tuple[list, list]:
    """(a CSV row per readable file, the files skipped); each printed as it comes."""
    top_k = min(args.top_k, model.spec.num_classes)
    rows, skipped = [], []
    scored = scored_files(model, inputs, top_k, args.batch_size, args.num_workers)
    for path, row, problem in scored:
        if row is None:
            print(f"skipped {path}: {problem}", file=sys.stderr)
            skipped.append(path)
            continue
        cells, line = row
        print(f"{path}: {line}")
        rows.append([str(path), *cells])
    return rows, skipped


def run(args: argparse.Namespace) -> None:
    model_path = model_file(args.checkpoint)
    model = load_model(model_path, resolve_device(args.device, 0))
    task = model.task
    inputs = task.predict_inputs(args.inputs)
    check_output(args.output, model_path, args.overwrite)
    one, several = task.input_names
    if inputs.ignored:
        print(
            f"ignored {len(inputs.ignored)} not {several}: {quoted(inputs.ignored)}",
            file=sys.stderr,
        )
    rows, skipped = predicted_rows(model, inputs, args)
    total = len(inputs.files)
    if not rows:
        raise UserError(
            f"none of the {total} file(s) could be read as {one} ({quoted(skipped)}): "
            "fix them or give other files"
        )
    if skipped:
        print(f"skipped {len(skipped)} of {total} files: {quoted(skipped)}", file=sys.stderr)
    write_csv(args.output, ("path", *task.prediction_columns), rows)
    print(f"{len(rows)} prediction(s) written to {args.output}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
