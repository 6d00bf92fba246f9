"""--export-onnx: the run's best.pt as <run folder>/model.onnx once training ends."""

import logging
from pathlib import Path

from ..config.schema import Config
from ..data.spec import DataSpec
from ..runs.onnx_model import export_checkpoint
from .base import RunLogger, register_logger


@register_logger
class OnnxExport(RunLogger):
    """--export-onnx: the run's best.pt as <run folder>/model.onnx once training ends."""

    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        self.output = run_dir / "model.onnx" if config.extras["export_onnx"] else None

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        if self.output is not None:
            export_checkpoint(best_checkpoint, self.output, logging.getLogger("train").info)
