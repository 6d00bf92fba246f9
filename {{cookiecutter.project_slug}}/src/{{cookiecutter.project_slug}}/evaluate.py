"""`python -m {{ cookiecutter.project_slug }}.evaluate`: score a checkpoint on a split."""

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import torch

from .config.flags import ConfigParser, positive_int
from .config.parser import saved_config
from .config.schema import DataConfig
from .data.loaders import all_samples
from .data.spec import DataSpec, class_differences
from .datasets import build_datasets, dataset_info
from .errors import UserError, prepare_output_file, run_reporting_user_errors
from .models import build_model
from .runs.checkpoint import load_checkpoint, load_model_weights
from .tasks import build_task
from .tasks.base import Task
from .training.resume import recorded_split
from .training.validation import score

SPLITS = ("val", "test", "all")


def build_parser() -> argparse.ArgumentParser:
    parser = ConfigParser(
        prog="evaluate", description="Loss, accuracy, per-class accuracy and confusion matrix."
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="last.pt or best.pt")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="val: the run's validation split; test: the data folder's test/ folder; all: every "
        "sample (default: all for a --data-dir without split folders, else val)",
    )
    parser.add_argument("--data-dir", type=Path, help="score this folder instead of the run's data")
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="evaluation batch size"
    )
    parser.add_argument("--output", type=Path, help="JSON report (default: next to the checkpoint)")
    return parser


def chosen_split(args: argparse.Namespace, data: DataConfig) -> str:
    if args.split is not None:
        return args.split
    scored_whole = args.data_dir is not None and dataset_info(data.dataset).scored_whole(
        args.data_dir
    )
    return "all" if scored_whole else "val"


def split_dataset(splits: dict, split: str, data: DataConfig):
    if split == "all":
        return all_samples(splits)
    if split not in splits:
        where = "" if data.data_dir is None else f" in {data.data_dir}"
        raise UserError(
            f"{data.dataset} data{where} has no {split} split "
            f"(it has {', '.join(sorted(splits))}): pass --split val or --split all"
        )
    return splits[split]


def check_trained_classes(data: DataSpec, trained: DataSpec, checkpoint: Path) -> None:
    if data.class_names != trained.class_names:
        raise UserError(
            f"the data's classes differ from those checkpoint {checkpoint} was trained on "
            f"({class_differences(trained.class_names, data.class_names)}): give the folder "
            f"exactly the class folders {', '.join(trained.class_names)}"
        )


def evaluate_checkpoint(args: argparse.Namespace) -> tuple[dict, Task]:
    """The report of the checkpoint on the chosen split, and the task that reads it."""
    checkpoint = load_checkpoint(args.checkpoint)
    config = saved_config(checkpoint["config"])
    data = config.data
    if args.data_dir is not None:
        data = dataclasses.replace(data, data_dir=args.data_dir)
    split = chosen_split(args, data)
    # --split all is every sample, added since or not; train and val are the recorded ones.
    recorded = None if split == "all" else recorded_split(checkpoint, data)
    trained = DataSpec.from_dict(checkpoint["data_spec"])
    splits, spec = build_datasets(data, False, recorded, trained)
    check_trained_classes(spec, trained, args.checkpoint)
    dataset = split_dataset(splits, split, data)
    model = build_model(config.model.model, trained)
    load_model_weights(model, checkpoint, args.checkpoint, for_inference=True)
    cpu = torch.device("cpu")
    task = build_task(dataset_info(data.dataset).task, config, trained, None, cpu)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, collate_fn=task.eval_collate_fn()
    )
    report = {
        "checkpoint": str(args.checkpoint),
        "data_dir": None if data.data_dir is None else str(data.data_dir),
        "dataset": data.dataset,
        "split": split,
        "weights": "ema" if "ema" in checkpoint else "model",
        task.input_names[1]: len(dataset),  # "images", "texts"
        **task.report(score(model, loader, task, cpu)),
    }
    return report, task


def report_path(checkpoint: Path, split: str) -> Path:
    """Beside the checkpoint, named after it so that best.pt's report and last.pt's never
    replace each other: eval_val.json for best.pt, eval_val_last.json for last.pt."""
    named = "" if checkpoint.name == "best.pt" else f"_{checkpoint.stem}"
    return checkpoint.with_name(f"eval_{split}{named}.json")


def run(args: argparse.Namespace) -> None:
    if args.output is not None:
        prepare_output_file(args.output, "eval.json", args.checkpoint)
    report, task = evaluate_checkpoint(args)
    output = args.output or report_path(args.checkpoint, report["split"])
    try:
        output.write_text(json.dumps(report, indent=2))
    except OSError as error:
        raise UserError(f"cannot write {output} ({error.strerror}): pass --output PATH") from None
    print(task.format_report(report))
    print(f"report written to {output}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_reporting_user_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
