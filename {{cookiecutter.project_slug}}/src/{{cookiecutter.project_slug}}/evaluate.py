"""`python -m {{ cookiecutter.project_slug }}.evaluate`: score a checkpoint on a split."""

import argparse
import json
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, load_model_weights
from .data import DataSpec, build_datasets
from .engine import evaluate
from .errors import UserError, run_reporting_user_errors
from .models import build_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate", description="Loss, accuracy, per-class accuracy and confusion matrix."
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="last.pt or best.pt")
    parser.add_argument(
        "--split", choices=("val", "test"), default="val", help="test is the held-out val split"
    )
    parser.add_argument("--data-dir", type=Path, help="override the data folder of the run")
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    parser.add_argument("--output", type=Path, help="JSON report (default: next to the checkpoint)")
    return parser


def evaluate_checkpoint(args: argparse.Namespace) -> dict:
    checkpoint = load_checkpoint(args.checkpoint)
    config = argparse.Namespace(**checkpoint["config"])
    if args.data_dir is not None:
        config.data_dir = args.data_dir
    _, split, spec = build_datasets(config)
    expected = DataSpec(
        tuple(checkpoint["class_names"]), checkpoint["in_channels"], checkpoint["image_size"]
    )
    if spec != expected:
        raise UserError(
            f"the data ({spec.num_classes} classes) does not match checkpoint {args.checkpoint} "
            f"({expected.num_classes} classes): pass the --data-dir it was trained on"
        )
    model = build_model(config.model, spec)
    load_model_weights(model, checkpoint, args.checkpoint)
    loader = torch.utils.data.DataLoader(split, batch_size=args.batch_size)
    results = evaluate(model, loader, spec.num_classes, torch.device("cpu"))
    return {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "classes": list(spec.class_names),
        **results,
    }


def format_report(report: dict) -> str:
    lines = [
        f"{report['split']} loss {report['val_loss']:.4f}  top-1 {report['val_acc']:.4f}",
        "class            accuracy",
    ]
    for name, accuracy in zip(report["classes"], report["per_class_acc"], strict=True):
        lines.append(f"{name[:16]:<16} {accuracy:8.4f}")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    lines += [" ".join(f"{count:5d}" for count in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    report = evaluate_checkpoint(args)
    output = args.output or args.checkpoint.with_name(f"eval_{args.split}.json")
    output.write_text(json.dumps(report, indent=2))
    print(format_report(report))
    print(f"report written to {output}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
