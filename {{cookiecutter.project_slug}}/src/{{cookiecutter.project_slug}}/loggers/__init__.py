"""Where metrics go: train.log and metrics.jsonl always, plus the chosen experiment trackers."""

import argparse
import logging
import sys
from logging.handlers import MemoryHandler
from pathlib import Path

from ..data import DataSpec
from .base import ExperimentLoggers
from .metrics_file import MetricsFile
{% if cookiecutter.logger in ["tensorboard", "both"] -%}
from .tensorboard_logger import TensorBoardLogger
{% endif -%}
{% if cookiecutter.logger in ["wandb", "both"] -%}
from .wandb_logger import WandbLogger
{% endif %}
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def console_logger(writes: bool) -> logging.Logger:
    """Log to stderr, keeping the lines for train.log until the run folder exists.

    Processes that do not write (DDP ranks other than 0) log warnings only.
    """
    log = logging.getLogger("train")
    log.handlers.clear()
    log.setLevel(logging.INFO if writes else logging.WARNING)
    log.propagate = False
    log.addHandler(formatted(logging.StreamHandler(sys.stderr)))
    if writes:
        log.addHandler(MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1))
    return log


def keep_log_in(run_dir: Path) -> None:
    """Start <run_dir>/train.log with the lines logged so far, then log straight to it."""
    log = logging.getLogger("train")
    log_file = formatted(logging.FileHandler(run_dir / "train.log"))
    for handler in list(log.handlers):
        if isinstance(handler, MemoryHandler):
            handler.setTarget(log_file)
            handler.close()  # flushes the kept lines into train.log
            log.removeHandler(handler)
    log.addHandler(log_file)


def close_log() -> None:
    """Detach and close this run's handlers (train.log stays complete; nothing logs after)."""
    log = logging.getLogger("train")
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def append_to_run_log(line: str) -> None:
    """Add a line to train.log (when the run folder exists), not to the console."""
    log = logging.getLogger("train")
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, line, (), None)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def formatted(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    return handler


def build_loggers(
    config: argparse.Namespace, run_dir: Path, spec: DataSpec, resumed: dict | None
) -> ExperimentLoggers:
    """The run's loggers; `resumed` is the checkpoint the run continues (None: a new run)."""
    completed_epochs = 0 if resumed is None else resumed["epoch"]
    loggers = [
        MetricsFile(run_dir / "metrics.jsonl", completed_epochs),
{%- if cookiecutter.logger in ["tensorboard", "both"] %}
        TensorBoardLogger(run_dir / "tensorboard", config, spec, resumed),
{%- endif %}
{%- if cookiecutter.logger in ["wandb", "both"] %}
        WandbLogger(run_dir, config, spec, resumed),
{%- endif %}
    ]
    return ExperimentLoggers(loggers)
