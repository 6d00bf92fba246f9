"""A training run, top to bottom: launch, build, resume, the epoch loop, finish."""

import functools
import time
from pathlib import Path

import torch
from torch import nn

from .cam import GradCam
from .checkpoint import (
    capture_rng_state,
    load_resumable,
    restore_rng_state,
    restore_run_state,
    save_run_state,
)
from .config import Config, RunConfig, config_yaml
from .data import build_datasets, build_loaders, loss_class_weights
from .early_stopping import EarlyStopping, resolve_mode
from .ema import build_ema
from .engine import Optimisation, Progress, Training, evaluate, train_one_epoch
from .errors import StoppedEarly, UserError, user_message
from .features import load_implementations
from .insight import record_insights
from .loggers import (
    ExperimentLoggers,
    append_to_run_log,
    build_loggers,
    check_loggers_can_start,
    close_log,
    console_logger,
    keep_log_in,
    loggers_need_predictions,
)
from .models import build_model, initialise_weights, memory_format, model_summary
from .optim import build_optimizer, build_scheduler
from .precision import build_precision
from .preemption import StopRequest
from .run_folder import continues_in_place, owned_by_rank0, resume_source
from .runtime import Runtime, launch, seed_everything


def train(config: Config, stop: StopRequest) -> None:
    """Train under the launch that applies to this process (see runtime.launch), until done or
    `stop` is requested."""
    load_implementations()
    launch(config, functools.partial(run, stop=stop))


def run(config: Config, runtime: Runtime, stop: StopRequest) -> None:
    """This process's part of a run: own the run folder, fit."""
    seed_everything(config.run.seed + runtime.rank, config.run.deterministic)
    run_dir = config.run.output_dir / config.run.name
    log = console_logger(writes=runtime.is_main)
    try:
        with owned_by_rank0(run_dir, runtime, log):
            start_and_fit(config, runtime, run_dir, stop, log)
    except UserError as error:
        append_to_run_log(f"error: {user_message(error)}")
        raise
    finally:
        close_log()


def start_and_fit(config: Config, runtime: Runtime, run_dir: Path, stop: StopRequest, log) -> None:
    """Check what can be checked before any data is read, build, resume, then fit."""
    resume_from = resume_source(run_dir, config.run.resume)
    state = None if resume_from is None else load_resumable(resume_from, config)
    check_loggers_can_start(config)
    runtime.barrier()  # every rank checks the folder before rank 0 writes into it
    log.info("training on %s, world size %d", runtime.device, runtime.world_size)
    training = build_training(config, runtime, log)
    if state is not None:
        restore_run_state(training, state, resume_from, runtime.rank)
        log.info("resumed from %s in epoch %s, step %d", resume_from, *resume_point(state))
    loggers = ExperimentLoggers([])
    if runtime.is_main:  # only once set-up succeeded: a run that cannot start leaves nothing
        # A run branched from another run's checkpoint gets its own config.yaml and trackers.
        in_place = continues_in_place(run_dir, resume_from)
        open_run_folder(config, run_dir, not in_place, log)
        loggers = build_loggers(config, run_dir, training.spec, state if in_place else None)
    fit(config, runtime, training, run_dir, loggers, stop, log)


def build_training(config: Config, runtime: Runtime, log) -> Training:
    splits, spec = build_datasets(config.data)
    train_loader, val_loader = build_loaders(
        splits["train"],
        splits["val"],
        spec,
        config.data,
        runtime.rank,
        runtime.world_size,
        pin_memory=runtime.device.type == "cuda",
    )
    weights = loss_class_weights(config.optim.class_weights, splits["train"], spec.class_names)
    model = build_model(config.model.model, spec, config.model.pretrained)
    initialise_weights(model, config.model.init)
    layout = memory_format(config.model)
    model.to(runtime.device, memory_format=layout)
    if runtime.is_main:
        log.info("model:\n%s", model_summary(model, spec, runtime.device))
    ema = build_ema(model, config.optim.ema)  # a copy taken before compiling
    if config.model.compile:
        model.compile()  # in place: parameter names, and so checkpoints, stay the model's own
    optimizer = build_optimizer(model, config.optim)
    optimisation = Optimisation(
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config.optim, len(train_loader)),
        criterion=nn.CrossEntropyLoss(
            weight=weights, label_smoothing=config.optim.label_smoothing
        ).to(runtime.device),
        accum_steps=config.optim.accum_steps,
        clip_grad_norm=config.optim.clip_grad_norm,
        precision=build_precision(config.features, runtime.device, log),
        ema=ema,
    )
    run = config.run
    stopper = EarlyStopping(run.patience, run.min_delta, resolve_mode(run.monitor, run.mode))
    return Training(
        model, optimisation, stopper, Progress(), spec, train_loader, val_loader, layout
    )


def resume_point(state: dict) -> tuple[str, int]:
    """The epoch a checkpoint resumes in ("3", or "3 after 40 batches") and its step."""
    epoch = f"{state['epoch'] + 1}"
    if state["batches_done"]:
        epoch += f" after {state['batches_done']} batches"
    return epoch, state["global_step"]


def open_run_folder(config: Config, run_dir: Path, is_new: bool, log) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    keep_log_in(run_dir)
    if is_new:
        text = config_yaml(config)
        (run_dir / "config.yaml").write_text(text)
        log.info("config:\n%s", text.rstrip())


def fit(
    config: Config,
    runtime: Runtime,
    training: Training,
    run_dir: Path,
    loggers: ExperimentLoggers,
    stop: StopRequest,
    log,
) -> None:
    """The epoch loop: train, evaluate, report, save; stop early, on a signal or at the end."""
    trained_model = runtime.wrap(training.model, log)  # a multi-GPU wrapper, or the model
    progress = training.progress
    if progress.global_step == 0:
        loggers.log_start(training.model, functools.cache(lambda: sample_batch(training)))
    cam = grad_cam_of(config, training, runtime)
    started = time.perf_counter()
    run = config.run
    for epoch in range(progress.epoch, last_epoch(run, progress)):
        training.train_loader.sampler.set_epoch(
            epoch, progress.batches_done * config.data.batch_size
        )
        train_stats = train_one_epoch(
            trained_model,
            training.train_loader,
            training.optimisation,
            progress,
            runtime,
            run.log_every,
            loggers.log_step,
            show_progress=runtime.is_main and not run.no_progress,
            should_stop=lambda: runtime.any_rank(stop.requested()),
            memory_format=training.memory_format,
        )
        if train_stats is None:
            save_run_state(training, config, runtime, loggers.state_dict(), [run_dir / "last.pt"])
            log.info(
                "stopped at epoch %d, step %d (%s): continue with --resume auto",
                epoch + 1,
                progress.global_step,
                stop.reason,
            )
            raise StoppedEarly(stop.reason)
        val_stats, selected_stats = validate(training, runtime)
        improved = training.stopper.update(selected_stats[run.monitor])
        progress.epoch = epoch + 1
        record = epoch_record(progress, train_stats, val_stats, selected_stats, training)
        loggers.log_validation(selected_stats, progress.global_step)
        if cam is not None and progress.epoch % run.cam_every == 0:
            loggers.log_cam(cam(selecting_model(training), progress.epoch), progress.global_step)
        loggers.log_epoch(record, progress.global_step, training.model)
        paths = [run_dir / "last.pt", *([run_dir / "best.pt"] if improved else [])]
        save_run_state(training, config, runtime, loggers.state_dict(), paths)
        log.info(epoch_line(record, run.epochs))
        if runtime.rank0_decides(training.stopper.should_stop):
            log.info("early stopping: %s has not improved for %d epochs", run.monitor, run.patience)
            break
    runtime.check_replicas_agree(training.model, log)
    log.info("trained to epoch %d in %.1f s", progress.epoch, time.perf_counter() - started)
    if runtime.is_main and finished_training(run, training, stop):
        step = progress.global_step
        record_insights(config, training, runtime.device, run_dir, loggers, step, log)
    loggers.finish({run.monitor: training.stopper.best}, run_dir / "best.pt")
    selected_by = f"ema_{run.monitor}" if training.optimisation.ema is not None else run.monitor
    log.info("best %s %.4f; run folder %s", selected_by, training.stopper.best, run_dir)


def finished_training(run: RunConfig, training: Training, stop: StopRequest) -> bool:
    """Every epoch trained, or early stopping ended it; not a --stop-after-epochs part of a run,
    nor one asked to stop after its last step (it may be about to be killed)."""
    done = training.progress.epoch >= run.epochs or training.stopper.should_stop
    return done and not stop.requested()


def validate(training: Training, runtime: Runtime) -> tuple[dict, dict]:
    """Scores of the model and of the model that selects best.pt: its EMA when on, else
    itself."""
    models = [training.model]
    if training.optimisation.ema is not None:
        models.append(training.optimisation.ema.module)
    scores = []
    for index, model in enumerate(models):
        runtime.share_buffers(model)
        last = index == len(models) - 1
        scores.append(
            evaluate(
                model,
                training.val_loader,
                training.spec.num_classes,
                runtime.device,
                training.optimisation.precision.autocast,
                keep_predictions=last and loggers_need_predictions(),  # a collective: all ask
                memory_format=training.memory_format,
            )
        )
    return scores[0], scores[-1]


def selecting_model(training: Training) -> nn.Module:
    """The model whose scores select best.pt, and that evaluate and export use: the EMA when
    on, else the model itself (never a multi-GPU wrapper)."""
    ema = training.optimisation.ema
    return training.model if ema is None else ema.module


def grad_cam_of(config: Config, training: Training, runtime: Runtime) -> GradCam | None:
    """--cam-every's validation images, chosen once for the run, in the writing process only
    (the others never compute Grad-CAM, so none of them waits for it)."""
    if not config.run.cam_every or not runtime.is_main:
        return None
    return GradCam(
        config.model.model,
        training.val_loader.dataset,
        training.spec,
        runtime.device,
        training.memory_format,
    )


def last_epoch(run: RunConfig, progress: Progress) -> int:
    if run.stop_after_epochs is None:
        return run.epochs
    return min(run.epochs, progress.epoch + run.stop_after_epochs)


def sample_batch(training: Training) -> torch.Tensor:
    """One augmented batch for the loggers, drawn without disturbing the training RNG streams."""
    rng_state = capture_rng_state()
    images, _ = next(iter(training.train_loader))
    restore_rng_state(rng_state)
    return images


def epoch_record(
    progress: Progress,
    train_stats: dict,
    val_stats: dict,
    selected_stats: dict,
    training: Training,
) -> dict:
    record = {"epoch": progress.epoch, "step": progress.global_step}
    record.update(train_stats)
    record.update({key: value for key, value in val_stats.items() if key.startswith("val_")})
    if selected_stats is not val_stats:
        record.update(
            {f"ema_{key}": value for key, value in selected_stats.items() if key.startswith("val_")}
        )
    record["lr"] = training.optimisation.optimizer.param_groups[0]["lr"]
    record["per_class_acc"] = selected_stats["per_class_acc"]
    return record


def epoch_line(record: dict, epochs: int) -> str:
    ema = f"ema_val_acc {record['ema_val_acc']:.4f} " if "ema_val_acc" in record else ""
    return (
        f"epoch {record['epoch']}/{epochs} train_loss {record['train_loss']:.4f} "
        f"train_acc {record['train_acc']:.4f} val_loss {record['val_loss']:.4f} "
        f"val_acc {record['val_acc']:.4f} {ema}lr {record['lr']:.2e} "
        f"{record['samples_per_second']:.0f} samples/s {record['epoch_seconds']:.1f}s"
    )
