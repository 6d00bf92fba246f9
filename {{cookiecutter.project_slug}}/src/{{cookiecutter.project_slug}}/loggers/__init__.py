"""Where metrics go: train.log and metrics.jsonl always, plus the chosen experiment trackers."""

{% if cookiecutter.logger != "none" -%}
import argparse
{% endif -%}
import logging
import sys
from pathlib import Path

{% if cookiecutter.logger != "none" -%}
from ..data import DataSpec
{% endif -%}
from .base import ExperimentLoggers
from .metrics_file import MetricsFile
{% if cookiecutter.logger in ["tensorboard", "both"] -%}
from .tensorboard_logger import TensorBoardLogger
{% endif -%}
{% if cookiecutter.logger in ["wandb", "both"] -%}
from .wandb_logger import WandbLogger
{% endif %}
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def console_logger(run_dir: Path | None) -> logging.Logger:
    """Log to stderr and <run_dir>/train.log; processes that do not write log warnings only."""
    log = logging.getLogger("train")
    log.handlers.clear()
    log.setLevel(logging.INFO if run_dir is not None else logging.WARNING)
    log.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
        log.addHandler(handler)
    return log


{% if cookiecutter.logger == "none" -%}
def build_loggers(run_dir: Path, completed_epochs: int) -> ExperimentLoggers:
    return ExperimentLoggers([MetricsFile(run_dir / "metrics.jsonl", completed_epochs)])
{% else -%}
def build_loggers(
    config: argparse.Namespace, run_dir: Path, spec: DataSpec, completed_epochs: int
) -> ExperimentLoggers:
    loggers = [
        MetricsFile(run_dir / "metrics.jsonl", completed_epochs),
{%- if cookiecutter.logger in ["tensorboard", "both"] %}
        TensorBoardLogger(run_dir / "tensorboard", config, spec),
{%- endif %}
{%- if cookiecutter.logger in ["wandb", "both"] %}
        WandbLogger(run_dir, config, spec),
{%- endif %}
    ]
    return ExperimentLoggers(loggers)
{% endif -%}
