"""The optional parts this project was generated with (its extras): the only module that
names them.

Each entry gives the module implementing a part, the flags it adds and the checks on them.
Training imports the modules (load_implementations), and each registers itself with the part
of the run it extends. The post-generation hook deleted the modules of parts not chosen.
"""

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from . import flags


def no_flags(parser: argparse.ArgumentParser) -> None:
    """An optional part without flags of its own."""


def no_checks(config: argparse.Namespace, parser: flags.ConfigParser) -> None:
    """An optional part whose flags need no check beyond their types."""


@dataclass(frozen=True)
class Extra:
    """An optional part's flags, their checks, and the module that registers its logger,
    launcher or training hook when imported (None: the part is plain code switched by its
    flags)."""

    module: str | None
    add_flags: Callable[[argparse.ArgumentParser], None] = no_flags
    check: Callable[[argparse.Namespace, flags.ConfigParser], None] = no_checks


PACKAGE = __package__.rpartition(".")[0]
EXTRAS: list[Extra] = []


def load_implementations() -> None:
    """Import every chosen part's module (this needs torch), registering its hooks."""
    for extra in EXTRAS:
        if extra.module is not None:
            importlib.import_module(f"{PACKAGE}.{extra.module}")
{%- if cookiecutter.insight == "yes" and cookiecutter.task == "image_classification" %}


def add_grad_cam_flags(parser: argparse.ArgumentParser) -> None:
    cam = parser.add_argument_group("grad-cam")
    cam.add_argument(
        "--cam-every",
        type=flags.non_negative_int,
        default=0,
        help="Grad-CAM heat maps of up to 16 fixed validation images every N epochs, to "
        "<run folder>/cam/ and the loggers (0: off; models with a convolutional feature map)",
    )


def check_grad_cam_flags(config: argparse.Namespace, parser: flags.ConfigParser) -> None:
    from ..models import model_info

    if config.cam_every and model_info(config.model).cam_layer is None:
        parser.error(
            f"--model {config.model} has no spatial feature map for Grad-CAM: drop --cam-every"
        )


EXTRAS.append(Extra("insight.cam", add_grad_cam_flags, check_grad_cam_flags))
{%- endif %}
{%- if cookiecutter.insight == "yes" %}


def add_finished_run_flags(parser: argparse.ArgumentParser) -> None:
    finished = parser.add_argument_group("end of run: best.pt on the validation split")
    finished.add_argument(
        "--embeddings",
        type=flags.non_negative_int,
        default=1000,
        metavar="N",
        help="penultimate features of up to N validation samples (as many per class as it "
        "allows when there are more) for an embedding projector (0: off)",
    )
    finished.add_argument(
        "--mistakes",
        type=flags.non_negative_int,
        default=16,
        metavar="N",
        help="the N most confident wrong predictions, to the run folder and the loggers (0: off)",
    )


EXTRAS.append(Extra("insight.finished_run", add_finished_run_flags))
{%- endif %}
{%- if cookiecutter.mixed_precision == "yes" %}


def add_amp_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("mixed precision")
    group.add_argument("--amp", action="store_true", help="automatic mixed precision")
    group.add_argument(
        "--amp-dtype",
        choices=("bfloat16", "float16"),
        help="autocast dtype with --amp (default: bfloat16); float16 adds a GradScaler",
    )


def check_amp_flags(config: argparse.Namespace, parser: flags.ConfigParser) -> None:
    if config.amp_dtype is not None and not config.amp:
        parser.error("--amp-dtype has no effect without --amp: add --amp or drop --amp-dtype")
    if config.amp and config.amp_dtype is None:
        config.amp_dtype = "bfloat16"


EXTRAS.append(Extra(None, add_amp_flags, check_amp_flags))
{%- endif %}
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}


EXTRAS.append(Extra("runs.distributed"))
{%- endif %}
{%- if cookiecutter.multi_gpu in ["dp", "both"] %}


def add_data_parallel_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data parallel")
    group.add_argument(
        "--dp", action="store_true", help="nn.DataParallel over all visible GPUs (single process)"
    )


def check_data_parallel_flags(config: argparse.Namespace, parser: flags.ConfigParser) -> None:
    import os

    if config.dp and "WORLD_SIZE" in os.environ:  # set by torchrun
        parser.error("--dp cannot be combined with a torchrun (DDP) launch: drop --dp")


EXTRAS.append(Extra("runs.data_parallel", add_data_parallel_flags, check_data_parallel_flags))
{%- endif %}
{%- if cookiecutter.logger in ["tensorboard", "both"] %}


def add_tensorboard_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tensorboard")
    group.add_argument(
        "--histogram-every",
        type=flags.non_negative_int,
        default=0,
        help="TensorBoard weight histograms every N epochs (0: off)",
    )


EXTRAS.append(Extra("loggers.tensorboard_logger", add_tensorboard_flags))
{%- endif %}
{%- if cookiecutter.logger in ["wandb", "both"] %}


def add_wandb_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("weights & biases")
    group.add_argument(
        "--wandb-project", help="wandb project (default: $WANDB_PROJECT, else the package name)"
    )
    group.add_argument("--wandb-entity", help="wandb entity (default: $WANDB_ENTITY)")


EXTRAS.append(Extra("loggers.wandb_logger", add_wandb_flags))
{%- endif %}
{%- if cookiecutter.onnx_export == "yes" %}


def add_export_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("onnx")
    group.add_argument(
        "--export-onnx", action="store_true", help="write and verify model.onnx after training"
    )


EXTRAS.append(Extra("loggers.onnx_export", add_export_flags))
{%- endif %}
