"""`python -m {{ cookiecutter.project_slug }}.predict`: the top classes of image files, as a CSV.

The model is a checkpoint (best.pt, last.pt, or a run folder for its best.pt; with the weights
evaluate uses, the EMA's when the run kept one) or an exported model.onnx (predict_onnx.py).
Each file is read and transformed as evaluation reads a photo, with the preprocessing and class
names the model file records, and scored in batches. Files that cannot be read are named on
stderr and skipped.
"""

import argparse
import csv
import importlib
import importlib.util
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import DataLoader

from .config.flags import (
    ConfigParser,
    DefaultsHelpFormatter,
    device_name,
    non_negative_int,
    positive_int,
)
from .data.image_datasets import ImageFileDataset
from .data.image_files import IMAGE_EXTENSIONS, is_image_file, load_rgb
from .data.image_folder import files_under
from .data.spec import DataSpec
from .data.transforms import decode_min_side, image_file_transform
from .errors import UserError, first_line, prepare_output_file, run_reporting_user_errors
from .models import build_model
from .runs.checkpoint import load_checkpoint, load_model_weights
from .runs.runtime import resolve_device

# Present only in projects generated with the onnx_export option.
ONNX_BACKEND = f"{__package__}.runs.onnx_model"
CSV_COLUMNS = ("path", "class", "probability", "top_k")
LISTED = 5  # file names quoted in one line


def build_parser() -> argparse.ArgumentParser:
    parser = ConfigParser(
        prog="predict",
        description="Top-k classes of image files from a checkpoint or an exported model.onnx.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="IMAGES",
        help="image files, folders (their images, recursively) or list files (one path per line, "
        "relative to the list file; blank lines and lines starting with # are skipped)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="best.pt or last.pt, a run folder (its best.pt), or a model.onnx written by export "
        "(in projects generated with the onnx_export option)",
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=5, help="classes per image, at most the class count"
    )
    parser.add_argument("--output", type=Path, default=Path("predictions.csv"), help="CSV file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    parser.add_argument(
        "--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto"
    )
    parser.add_argument(
        "--num-workers", type=non_negative_int, default=0, help="processes decoding images"
    )
    return parser


class Predictor(Protocol):
    """What predict needs of a model: the data it expects, and class probabilities."""

    spec: DataSpec

    def probabilities(self, images: torch.Tensor) -> torch.Tensor: ...


class CheckpointModel:
    """A checkpoint's model, with the weights evaluate uses (the EMA's when the run kept one)."""

    def __init__(self, path: Path, device: torch.device) -> None:
        checkpoint = load_checkpoint(path)
        self.spec = DataSpec.from_dict(checkpoint["data_spec"])
        model = build_model(checkpoint["config"]["model"], self.spec)
        load_model_weights(model, checkpoint, path, for_inference=True)
        self.model = model.to(device).eval()
        self.device = device

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.to(self.device)).float().softmax(dim=1).cpu()


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
        f"{path} holds no best.pt or last.pt, so is not a run folder: pass a run folder (a "
        "sweep's runs are its trial-NNNN folders), a best.pt, last.pt or model.onnx"
    )


def load_model(path: Path, device: torch.device) -> Predictor:
    if path.suffix.lower() == ".onnx":
        return onnx_backend(path).OnnxModel(path, device)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise UserError(
            f"{path} is truncated or not a PyTorch checkpoint, and not named *.onnx as an ONNX "
            "model must be: pass a best.pt, last.pt, run folder or model.onnx"
        )
    return CheckpointModel(path, device)


def onnx_backend(path: Path):
    if importlib.util.find_spec(ONNX_BACKEND) is None:
        raise UserError(
            f"{path} is an ONNX model, and predicting with one needs the onnx_export option, "
            "which this project was generated without: pass a best.pt, last.pt or run folder"
        )
    return importlib.import_module(ONNX_BACKEND)


def image_paths(sources: list[Path]) -> tuple[list[Path], list[Path]]:
    """The files to predict, in order: images as given, each folder's images (recursively, in
    sorted order) and the paths each list file names; and the folders' other files."""
    paths, ignored = [], []
    for source in sources:
        if not source.exists():
            raise UserError(
                f"{source} does not exist: give image files, folders of images or list files"
            )
        if source.is_dir():
            images, others = folder_files(source)
            paths += images
            ignored += others
        elif is_image_file(source):
            paths.append(source)
        else:
            paths += listed_paths(source)
    return paths, ignored


def folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files and skipped hidden folders) under `folder`, in sorted order."""
    files, hidden = files_under(folder)
    images = [path for path in files if is_image_file(path)]
    if not images:
        raise UserError(
            f"folder {folder} has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}): "
            "give a folder that holds images"
        )
    return images, sorted([path for path in files if not is_image_file(path)] + hidden)


def listed_paths(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(
            f"{list_file} is neither an image file ({', '.join(sorted(IMAGE_EXTENSIONS))}) nor a "
            "text file listing image paths: give images, folders or list files"
        ) from None
    except OSError as error:
        raise UserError(f"cannot read {list_file} ({error.strerror}): check the file") from None
    entries = [line.strip() for line in lines]
    paths = [
        list_file.parent / Path(entry).expanduser()
        for entry in entries
        if entry and not entry.startswith("#")
    ]
    if not paths:
        raise UserError(f"list file {list_file} names no files: write one image path per line")
    return paths


def quoted(paths: list[Path]) -> str:
    shown = ", ".join(str(path) for path in paths[:LISTED])
    return shown + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


class ImageFiles(ImageFileDataset):
    """Each file as the model's input, or why it cannot be read (predict skips those files)."""

    def __init__(self, paths: list[Path], spec: DataSpec) -> None:
        samples = [(path, 0) for path in paths]
        transform = image_file_transform(spec)
        super().__init__(samples, transform, skip_bad_images=False, min_side=decode_min_side(spec))

    def __getitem__(self, index: int) -> tuple[Path, torch.Tensor | None, str]:
        path = self.samples[index][0]
        try:
            image = load_rgb(path, self.min_side)
        except Exception as error:  # Pillow raises many types for broken files
            return path, None, first_line(error)
        return path, self.transform(image), ""


def as_list(samples: list) -> list:
    """A batch as it came: it may hold files that could not be read."""
    return samples


def scored_files(
    model: Predictor, paths: list[Path], batch_size: int, num_workers: int
) -> Iterator[tuple[Path, torch.Tensor | None, str]]:
    """(path, class probabilities, "") for each readable file, (path, None, why) for the
    others, in order."""
    loader = DataLoader(
        ImageFiles(paths, model.spec),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=as_list,
    )
    for batch in loader:
        images = [image for _, image, _ in batch if image is not None]
        scores = iter(model.probabilities(torch.stack(images)) if images else ())
        for path, image, problem in batch:
            yield path, None if image is None else next(scores), problem


def top_classes(probabilities: torch.Tensor, class_names, k: int) -> list[tuple[str, float]]:
    values, indices = probabilities.topk(k)
    ranked = zip(indices.tolist(), values.tolist(), strict=True)
    return [(class_names[index], value) for index, value in ranked]


def csv_row(path: Path, ranked: list[tuple[str, float]]) -> list[str]:
    (name, probability), top_k = ranked[0], ";".join(f"{n}:{p:.6f}" for n, p in ranked)
    return [str(path), name, f"{probability:.6f}", top_k]


def check_output(output: Path, model_path: Path, overwrite: bool) -> None:
    prepare_output_file(output, "predictions.csv", model_path)
    if output.exists() and not overwrite:
        raise UserError(
            f"--output {output} exists: pass --overwrite to replace it, or another --output"
        )


def write_csv(output: Path, rows: list[list[str]]) -> None:
    try:
        with open(output, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"cannot write {output} ({reason}): pick another --output") from None


def predicted_rows(
    model: Predictor, paths: list[Path], args: argparse.Namespace
) -> tuple[list, list]:
    """(a CSV row per readable file, the files skipped); each printed as it comes."""
    top_k = min(args.top_k, model.spec.num_classes)
    rows, skipped = [], []
    for path, probabilities, problem in scored_files(
        model, paths, args.batch_size, args.num_workers
    ):
        if probabilities is None:
            print(f"skipped {path}: {problem}", file=sys.stderr)
            skipped.append(path)
            continue
        ranked = top_classes(probabilities, model.spec.class_names, top_k)
        print(f"{path}: " + ", ".join(f"{name} {value:.4f}" for name, value in ranked))
        rows.append(csv_row(path, ranked))
    return rows, skipped


def run(args: argparse.Namespace) -> None:
    paths, ignored = image_paths(args.inputs)
    model_path = model_file(args.checkpoint)
    model = load_model(model_path, resolve_device(args.device, 0))
    check_output(args.output, model_path, args.overwrite)
    if ignored:
        print(f"ignored {len(ignored)} not images: {quoted(ignored)}", file=sys.stderr)
    rows, skipped = predicted_rows(model, paths, args)
    if not rows:
        raise UserError(
            f"none of the {len(paths)} file(s) could be read as an image ({quoted(skipped)}): "
            "fix them or give other files"
        )
    if skipped:
        print(f"skipped {len(skipped)} of {len(paths)} files: {quoted(skipped)}", file=sys.stderr)
    write_csv(args.output, rows)
    print(f"{len(rows)} prediction(s) written to {args.output}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
