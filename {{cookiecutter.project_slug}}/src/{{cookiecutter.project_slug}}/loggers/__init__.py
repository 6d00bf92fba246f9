"""Where metrics go: train.log and metrics.jsonl always, plus the chosen experiment trackers."""

import logging
import sys
from logging.handlers import MemoryHandler
from pathlib import Path

from ..config.schema import Config
from ..data.spec import DataSpec
from . import metrics_file  # noqa: F401  (registers the record every run keeps)
from .base import LOGGER_TYPES, ExperimentLoggers

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
    config: Config, run_dir: Path, spec: DataSpec, resumed: dict | None
) -> ExperimentLoggers:
    """Every registered logger for this run; `resumed` is the checkpoint it continues in its
    own folder (None: a new run or a branch)."""
    return ExperimentLoggers(
        [logger_type(run_dir, config, spec, resumed) for logger_type in LOGGER_TYPES]
    )


def check_loggers_can_start(config: Config) -> None:
    for logger_type in LOGGER_TYPES:
        logger_type.check_can_start(config)


def loggers_need_predictions() -> bool:
    return any(logger_type.needs_predictions for logger_type in LOGGER_TYPES)
