"""`python -m {{ cookiecutter.project_slug }}.export`: a checkpoint as a verified model.onnx
(runs/onnx_model.py writes and checks it)."""

import argparse
from pathlib import Path

from .config.flags import ConfigParser
from .errors import run_reporting_user_errors
from .runs.onnx_model import export_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = ConfigParser(
        prog="export", description="Export a checkpoint to ONNX and verify it in onnxruntime."
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="last.pt or best.pt")
    parser.add_argument("--output", type=Path, default=Path("model.onnx"), help="ONNX file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(lambda: export_checkpoint(args.checkpoint, args.output))


if __name__ == "__main__":
    raise SystemExit(main())
