"""metrics.jsonl: one JSON object per epoch, the record every logger choice keeps."""

import json
from pathlib import Path

from torch import nn

from ..config.schema import Config
from ..data.spec import DataSpec
from .base import RunLogger, register_logger


@register_logger
class MetricsFile(RunLogger):
    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.keep_epochs_up_to(0 if resumed is None else resumed["epoch"])

    def keep_epochs_up_to(self, completed_epochs: int) -> None:
        """Forget epochs a resumed run will train again (written after its last checkpoint)."""
        if not self.path.exists():
            return
        records = [parse_line(line) for line in self.path.read_text().splitlines()]
        kept = [record for record in records if record and record["epoch"] <= completed_epochs]
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")


def parse_line(line: str) -> dict | None:
    """A record, or None for a blank line or one torn by a crash while it was written."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
