"""A training run: set-up, the epoch loop, checkpoints, and the end-of-run export."""

import argparse
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from torchinfo import summary

{% if cookiecutter.mixed_precision == "yes" -%}
from .amp import MixedPrecision
{% endif -%}
from .checkpoint import (
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    unwrap,
)
from .config import config_to_dict
from .data import DataSpec, build_datasets, build_loaders, image_size_of
{% if cookiecutter.multi_gpu in ["dp", "both"] -%}
from .data_parallel import wrap_data_parallel
{% endif -%}
{% if cookiecutter.multi_gpu in ["ddp", "both"] -%}
from .distributed import (
    all_gather_objects,
    any_rank,
    barrier,
    broadcast_buffers,
    broadcast_flag,
    destroy_process_group,
    init_process_group,
    launched_by_torchrun,
    max_divergence_from_rank0,
    wrap_ddp,
)
{% endif -%}
from .early_stopping import EarlyStopping, resolve_mode
from .engine import Optimisation, Progress, evaluate, train_one_epoch
from .errors import StoppedEarly, UserError, user_message
{% if cookiecutter.onnx_export == "yes" -%}
from .export import export_and_verify
{% endif -%}
from .loggers import (
    append_to_run_log,
    build_loggers,
    close_log,
    console_logger,
    keep_log_in,
)
from .loggers.base import ExperimentLoggers
{% if cookiecutter.logger in ["wandb", "both"] -%}
from .loggers.wandb_logger import check_wandb_can_log
{% endif -%}
from .models import build_model, initialise_weights
from .optim import build_optimizer, build_scheduler
from .preemption import StopRequest, stop_requests
from .run_folder import continues_in_place, owned, resume_source


@dataclass(frozen=True)
class Runtime:
    """Where this process trains and which share of the work it has."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Training:
    """The objects a run builds once and checkpoints every epoch."""

    model: nn.Module
    optimisation: Optimisation
    stopper: EarlyStopping
    progress: Progress
    spec: DataSpec
    train_loader: DataLoader
    val_loader: DataLoader


def resolve_device(flag: str, local_rank: int) -> torch.device:
    if flag == "cpu":
        return torch.device("cpu")
    if flag == "auto":
        return (
            torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        )
    if not torch.cuda.is_available():
        raise UserError(
            f"--device {flag} asked for CUDA, but no CUDA GPU is visible: use --device cpu"
        )
    device = torch.device(flag)
    index = device.index if device.index is not None else local_rank
    if index >= torch.cuda.device_count():
        raise UserError(
            f"--device {flag}: only {torch.cuda.device_count()} GPU(s) visible, pick cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device("cuda", index)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic matrix products on CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


{% if cookiecutter.multi_gpu in ["ddp", "both"] -%}
def train(config: argparse.Namespace) -> None:
    """Train in this process, joining the torchrun process group when launched by torchrun."""
    if not launched_by_torchrun():
        run(config, Runtime(resolve_device(config.device, 0)))
        return
{%- if cookiecutter.multi_gpu == "both" %}
    if config.dp:
        raise UserError("--dp cannot be combined with a torchrun (DDP) launch: drop --dp")
{%- endif %}
    use_cuda = resolve_device(config.device, 0).type == "cuda"
    group = init_process_group(use_cuda)
    try:
        device = resolve_device(config.device, group.local_rank)
        run(config, Runtime(device, group.rank, group.world_size))
    finally:
        destroy_process_group()
{% else -%}
def train(config: argparse.Namespace) -> None:
    run(config, Runtime(resolve_device(config.device, 0)))
{% endif %}

def run(config: argparse.Namespace, runtime: Runtime) -> None:
    seed_everything(config.seed + runtime.rank, config.deterministic)
    run_dir = config.output_dir / config.name
    log = console_logger(writes=runtime.is_main)
    try:
        with owned(run_dir, log) if runtime.is_main else nullcontext():
            with stop_requests(config.max_minutes) as stop:
                start_and_fit(config, runtime, run_dir, stop, log)
    except UserError as error:
        append_to_run_log(f"error: {user_message(error)}")
        raise
    finally:
        close_log()


def start_and_fit(
    config: argparse.Namespace, runtime: Runtime, run_dir: Path, stop: StopRequest, log
) -> None:
    resume_from = resume_source(run_dir, config.resume)
    checkpoint = None if resume_from is None else checked_checkpoint(resume_from, config)
{%- if cookiecutter.logger in ["wandb", "both"] %}
    check_wandb_can_log()
{%- endif %}
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
    barrier()  # every rank checks the folder before rank 0 writes into it
{%- endif %}
    log.info("training on %s, world size %d", runtime.device, runtime.world_size)
{%- if cookiecutter.mixed_precision == "yes" %}
    if config.amp:
        scaler_note = " with GradScaler" if config.amp_dtype == "float16" else ""
        log.info("mixed precision: autocast %s%s", config.amp_dtype, scaler_note)
{%- endif %}
    training = build_training(config, runtime, log)
    if checkpoint is not None:
        resume(training, checkpoint, resume_from, runtime, log)
    if runtime.is_main:  # only once set-up succeeded: a run that cannot start leaves nothing
        open_run_folder(config, run_dir, checkpoint is None, log)
    loggers = None
    if runtime.is_main:
        # A run branched from another run's checkpoint gets trackers of its own.
        continued = checkpoint if continues_in_place(run_dir, resume_from) else None
        loggers = build_loggers(config, run_dir, training.spec, continued)
    fit(config, runtime, training, run_dir, loggers, stop, log)


def open_run_folder(config: argparse.Namespace, run_dir: Path, is_new: bool, log) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    keep_log_in(run_dir)
    if is_new:
        config_yaml = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        (run_dir / "config.yaml").write_text(config_yaml)
        log.info("config:\n%s", config_yaml.rstrip())


def build_training(config: argparse.Namespace, runtime: Runtime, log) -> Training:
    splits, spec = build_datasets(config)
    train_loader, val_loader = build_loaders(
        splits["train"],
        splits["val"],
        spec,
        config,
        runtime.rank,
        runtime.world_size,
        pin_memory=runtime.device.type == "cuda",
    )
    model = build_model(config.model, spec, config.pretrained)
    initialise_weights(model, config.init)
    model.to(runtime.device)
    if runtime.is_main:
        log.info("model:\n%s", model_summary(model, spec, runtime.device))
    optimizer = build_optimizer(model, config)
    optimisation = Optimisation(
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config, len(train_loader)),
        loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        accum_steps=config.accum_steps,
        clip_grad_norm=config.clip_grad_norm,
{%- if cookiecutter.mixed_precision == "yes" %}
        precision=MixedPrecision(config.amp, config.amp_dtype, runtime.device),
{%- endif %}
    )
    stopper = EarlyStopping(
        config.patience, config.min_delta, resolve_mode(config.monitor, config.mode)
    )
    return Training(model, optimisation, stopper, Progress(), spec, train_loader, val_loader)


def model_summary(model: nn.Module, spec: DataSpec, device: torch.device) -> str:
    input_size = (1, spec.in_channels, spec.image_size, spec.image_size)
    table = summary(
        model,
        input_size=input_size,
        device=device,
        mode="eval",
        verbose=0,
        col_names=("output_size", "num_params"),
    )
    return str(table)


def checked_checkpoint(path: Path, config: argparse.Namespace) -> dict:
    """The checkpoint to resume from, refused before any data is read if it cannot fit."""
    checkpoint = load_checkpoint(path)
    saved = checkpoint["config"]
    differences = [
        f"--{flag.replace('_', '-')} {saved.get(flag)}"
        for flag in ("dataset", "model", "optimizer")
        if saved.get(flag) != getattr(config, flag)
    ]
    saved_size = checkpoint["data_spec"]["image_size"]
    if saved_size != image_size_of(config):
        differences.append(f"--image-size {saved_size}")
    if differences:
        raise UserError(
            f"checkpoint {path} was trained with {', '.join(differences)}: resume with the same "
            "flags, or start a new --name without --resume"
        )
    return checkpoint


def resume(training: Training, checkpoint: dict, path: Path, runtime: Runtime, log) -> None:
    """Restore every piece of state the checkpoint holds, this rank's RNG streams included."""
    saved_classes = len(checkpoint["data_spec"]["class_names"])
    if saved_classes != training.spec.num_classes:
        raise UserError(
            f"checkpoint {path} is a {checkpoint['config']['model']} for {saved_classes} classes, "
            f"but this data has {training.spec.num_classes}: resume with the data it was "
            "trained on, or start a new --name without --resume"
        )
    load_model_weights(training.model, checkpoint, path)
    optimisation = training.optimisation
    optimisation.optimizer.load_state_dict(checkpoint["optimizer"])
    optimisation.scheduler.load_state_dict(checkpoint["scheduler"])
{%- if cookiecutter.mixed_precision == "yes" %}
    optimisation.precision.scaler.load_state_dict(checkpoint["scaler"])
{%- endif %}
    training.stopper.load_state_dict(checkpoint["early_stopping"])
    training.progress.epoch = checkpoint["epoch"]
    training.progress.global_step = checkpoint["global_step"]
    training.progress.batches_done = checkpoint["batches_done"]
    training.progress.partial_sums = checkpoint["partial_sums"][runtime.rank]
    rng_states = checkpoint["rng"]
    restore_rng_state(rng_states[runtime.rank % len(rng_states)])
    log.info(
        "resumed from %s after epoch %d%s (step %d)",
        path,
        checkpoint["epoch"],
        f" and {checkpoint['batches_done']} batches" if checkpoint["batches_done"] else "",
        checkpoint["global_step"],
    )


def checkpoint_payload(
    training: Training,
    config: argparse.Namespace,
    rank_states: dict,
    loggers: ExperimentLoggers,
) -> dict:
    """The whole run state; `rank_states` holds every rank's "rng" and "partial_sums" lists."""
    optimisation = training.optimisation
    return {
        "model": unwrap(training.model).state_dict(),
        "optimizer": optimisation.optimizer.state_dict(),
        "scheduler": scheduler_state(optimisation.scheduler),
{%- if cookiecutter.mixed_precision == "yes" %}
        "scaler": optimisation.precision.scaler.state_dict(),
{%- endif %}
        "epoch": training.progress.epoch,
        "global_step": training.progress.global_step,
        "batches_done": training.progress.batches_done,
        "monitor": config.monitor,
        "best_metric": training.stopper.best,
        "early_stopping": training.stopper.state_dict(),
        **rank_states,
        "config": config_to_dict(config),
        "data_spec": training.spec.to_dict(),
        "loggers": loggers.state_dict(),
    }


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """The scheduler's position; its schedule is rebuilt from the config on resume."""
    state = scheduler.state_dict()
    state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state


def wrap_for_devices(
    model: nn.Module, config: argparse.Namespace, runtime: Runtime, log
) -> nn.Module:
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
    if runtime.world_size > 1:
        return wrap_ddp(model, runtime.device)
{%- endif %}
{%- if cookiecutter.multi_gpu in ["dp", "both"] %}
    if config.dp:
        return wrap_data_parallel(model, runtime.device, log)
{%- endif %}
    return model


def fit(
    config: argparse.Namespace,
    runtime: Runtime,
    training: Training,
    run_dir: Path,
    loggers: ExperimentLoggers | None,
    stop: StopRequest,
    log,
) -> None:
    model = wrap_for_devices(training.model, config, runtime, log)
    progress = training.progress
{%- if cookiecutter.logger != "none" %}
    if runtime.is_main and progress.global_step == 0:
        loggers.log_start(training.model, sample_training_batch(training.train_loader))
{%- endif %}
    started = time.perf_counter()
    final_epoch = config.epochs
    if config.stop_after_epochs is not None:
        final_epoch = min(final_epoch, progress.epoch + config.stop_after_epochs)
    for epoch in range(progress.epoch, final_epoch):
        progress.epoch = epoch
        training.train_loader.sampler.set_epoch(epoch, progress.batches_done * config.batch_size)
        train_stats = train_one_epoch(
            model,
            training.train_loader,
            training.optimisation,
            progress,
            runtime.device,
            config.log_every,
            loggers.log_step if loggers else ignore_step,
            show_progress=runtime.is_main and not config.no_progress,
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
            should_stop=lambda: any_rank(stop.requested(), runtime.device),
{%- else %}
            should_stop=stop.requested,
{%- endif %}
        )
        if train_stats is None:
            save_where_it_stopped(config, runtime, training, run_dir, loggers, stop, log)
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
        broadcast_buffers(training.model)
{%- endif %}
        val_stats = evaluate(
            training.model,
            training.val_loader,
            training.spec.num_classes,
            runtime.device,
{%- if cookiecutter.mixed_precision == "yes" %}
            training.optimisation.precision.autocast,
{%- endif %}
{%- if cookiecutter.logger in ["tensorboard", "both"] %}
            keep_predictions=True,  # every rank: gathering them is a collective
{%- endif %}
        )
        improved = training.stopper.update(val_stats[config.monitor])
        progress.epoch = epoch + 1
        record = epoch_record(progress, train_stats, val_stats, training)
        rank_states = gather_rank_states(progress)
        if runtime.is_main:
            loggers.log_validation(val_stats, progress.global_step)
            loggers.log_epoch(record, progress.global_step, training.model)
            payload = checkpoint_payload(training, config, rank_states, loggers)
            save_checkpoints(payload, run_dir, improved)
            log.info(epoch_line(record, config.epochs))
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
        if broadcast_flag(training.stopper.should_stop):
{%- else %}
        if training.stopper.should_stop:
{%- endif %}
            log.info(
                "early stopping: %s has not improved for %d epochs", config.monitor, config.patience
            )
            break
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
    if runtime.world_size > 1:
        report_replica_agreement(training.model, runtime, log)
{%- endif %}
    if runtime.is_main:
        log.info("trained to epoch %d in %.1f s", progress.epoch, time.perf_counter() - started)
        finish_run(config, training, run_dir, loggers, log)


{% if cookiecutter.multi_gpu in ["ddp", "both"] -%}
def report_replica_agreement(model: nn.Module, runtime: Runtime, log) -> None:
    """Check that every rank ends with rank 0's weights (DDP keeps them in lockstep)."""
    divergence = max_divergence_from_rank0(model)
    if divergence == 0.0:
        log.info("parameters identical on all %d ranks", runtime.world_size)
    else:
        log.warning("parameters differ across ranks by up to %.3g", divergence)


{% endif -%}
{% if cookiecutter.logger != "none" -%}
def sample_training_batch(loader: DataLoader) -> torch.Tensor:
    """One augmented batch for the loggers, drawn without disturbing the training RNG streams."""
    rng_state = capture_rng_state()
    images, _ = next(iter(loader))
    restore_rng_state(rng_state)
    return images


{% endif -%}
def gather_rank_states(progress: Progress) -> dict:
    """Every rank's RNG streams and unfinished-epoch sums, in rank order."""
{%- if cookiecutter.multi_gpu in ["ddp", "both"] %}
    states = all_gather_objects((capture_rng_state(), progress.partial_sums))
{%- else %}
    states = [(capture_rng_state(), progress.partial_sums)]
{%- endif %}
    return {
        "rng": [rng for rng, _ in states],
        "partial_sums": [partial_sums for _, partial_sums in states],
    }


def save_where_it_stopped(
    config: argparse.Namespace,
    runtime: Runtime,
    training: Training,
    run_dir: Path,
    loggers: ExperimentLoggers | None,
    stop: StopRequest,
    log,
) -> None:
    """Save a mid-epoch last.pt (best.pt stays the best finished epoch) and end the run."""
    rank_states = gather_rank_states(training.progress)
    progress = training.progress
    if runtime.is_main:
        payload = checkpoint_payload(training, config, rank_states, loggers)
        atomic_save(payload, run_dir / "last.pt")
        log.info(
            "stopped at epoch %d, step %d (%s): continue with --resume auto",
            progress.epoch + 1,
            progress.global_step,
            stop.reason,
        )
    raise StoppedEarly(stop.reason)


def ignore_step(values: dict, step: int) -> None:
    """Step logging for processes that do not write (DDP ranks other than 0)."""


def epoch_record(
    progress: Progress, train_stats: dict, val_stats: dict, training: Training
) -> dict:
    record = {"epoch": progress.epoch, "step": progress.global_step}
    record.update(train_stats)
    record.update({key: value for key, value in val_stats.items() if key.startswith("val_")})
    record["lr"] = training.optimisation.optimizer.param_groups[0]["lr"]
    record["per_class_acc"] = val_stats["per_class_acc"]
    return record


def epoch_line(record: dict, epochs: int) -> str:
    return (
        f"epoch {record['epoch']}/{epochs} train_loss {record['train_loss']:.4f} "
        f"train_acc {record['train_acc']:.4f} val_loss {record['val_loss']:.4f} "
        f"val_acc {record['val_acc']:.4f} lr {record['lr']:.2e} "
        f"{record['samples_per_second']:.0f} samples/s {record['epoch_seconds']:.1f}s"
    )


def save_checkpoints(payload: dict, run_dir: Path, improved: bool) -> None:
    atomic_save(payload, run_dir / "last.pt")
    if improved:
        atomic_save(payload, run_dir / "best.pt")


def finish_run(
    config: argparse.Namespace,
    training: Training,
    run_dir: Path,
    loggers: ExperimentLoggers,
    log,
) -> None:
    best = {config.monitor: training.stopper.best}
    loggers.finish(best, run_dir / "best.pt")
    log.info("best %s %.4f; run folder %s", config.monitor, training.stopper.best, run_dir)
{%- if cookiecutter.onnx_export == "yes" %}
    if config.export_onnx:
        checkpoint = load_checkpoint(run_dir / "best.pt")
        load_model_weights(training.model, checkpoint, run_dir / "best.pt")
        export_and_verify(training.model, training.spec, run_dir / "model.onnx", log.info)
{%- endif %}
