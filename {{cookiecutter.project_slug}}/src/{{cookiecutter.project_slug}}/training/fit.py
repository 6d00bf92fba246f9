"""A training run, top to bottom: launch, build, resume, the epoch loop, finish."""

import functools
import time
from pathlib import Path

from ..config.extras import load_implementations
from ..config.schema import Config, RunConfig, config_yaml, update_config_yaml
from ..data.loaders import Placement, build_loaders
from ..data.spec import DataSpec
from ..datasets import dataset_info
from ..errors import StoppedEarly, UserError, user_message
from ..loggers import (
    ExperimentLoggers,
    append_to_run_log,
    build_loggers,
    check_loggers_can_start,
    close_log,
    console_logger,
    keep_log_in,
    loggers_need_predictions,
)
from ..models import build_model
from ..runs.checkpoint import capture_rng_state, restore_rng_state
from ..runs.folder import continues_in_place, owned_by_rank0, resume_source
from ..runs.preemption import StopRequest, ignore_stop_signals
from ..runs.runtime import Runtime, launch, seed_everything
from ..tasks import build_task
from .early_stopping import EarlyStopping, resolve_mode
from .ema import build_ema
from .hooks import build_hooks
from .loop import NonFiniteLossError, Optimisation, Progress, Training, train_one_epoch
from .model_setup import initialise_weights, model_summary
from .optimisation import build_optimizer, build_scheduler
from .precision import build_precision
from .report import epoch_line, epoch_record, resume_point
from .resume import (
    load_resumable,
    recorded_split,
    restore_run_state,
    save_run_state,
    write_split_file,
    write_tokenizer_file,
)
from .validation import validate


def train(config: Config, stop: StopRequest) -> None:
    """Train under the launch that applies to this process (see runtime.launch), until done or
    `stop` is requested."""
    load_implementations()
    launch(config, functools.partial(run, stop=stop))


def run(config: Config, runtime: Runtime, stop: StopRequest) -> None:
    """This process's part of a run: own the run folder, fit."""
    seed_everything(config.data.seed + runtime.rank, config.run.deterministic)
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
    training = build_training(config, runtime, log, state)
    if state is not None:
        restore_run_state(training, state, resume_from, runtime.rank)
        log.info("resumed from %s in epoch %s, step %d", resume_from, *resume_point(state))
    loggers = ExperimentLoggers([])
    if runtime.is_main:  # only once set-up succeeded: a run that cannot start leaves nothing
        # A run branched from another run's checkpoint gets its own config.yaml and trackers.
        in_place = continues_in_place(run_dir, resume_from)
        open_run_folder(config, run_dir, not in_place, log)
        write_split_file(run_dir, training.split_record)
        write_tokenizer_file(run_dir, training.spec)
        loggers = build_loggers(config, run_dir, training.spec, state if in_place else None)
    try:
        fit(config, runtime, training, run_dir, loggers, stop, log)
    except NonFiniteLossError as error:
        raise UserError(f"{error}; {what_was_saved(run_dir)}") from None


def what_was_saved(run_dir: Path) -> str:
    """For a run that fails: the checkpoint it can go back to, if it saved one."""
    last = run_dir / "last.pt"
    if last.exists():  # saves are atomic: whatever is there is whole
        return f"the last checkpoint, {last}, is intact"
    return "no checkpoint was saved yet"


def build_training(config: Config, runtime: Runtime, log, state: dict | None = None) -> Training:
    """Data, task, model and optimisation; `state`: the checkpoint a run resumes, whose recorded
    split and learned data facts (a tokenizer) it keeps."""
    dataset = dataset_info(config.data.dataset)
    recorded = recorded_split(state, config.data)
    trained_spec = None if state is None else DataSpec.from_dict(state["data_spec"])
    splits, spec = dataset.build(config.data, True, recorded, trained_spec)
    task = build_task(dataset.task, config, spec, splits["train"], runtime.device)
    check_has_validation_samples(splits["val"], task.input_names[1])
    placement = Placement(
        runtime.rank,
        runtime.world_size,
        runtime.device.type == "cuda",
        dataset.decodes_files,
        worker_init=ignore_stop_signals,  # stopping is the training process's business
    )
    collate_fns = (task.collate_fn(), task.eval_collate_fn())
    sampler = task.training_sampler(splits["train"], runtime.rank, runtime.world_size)
    train_loader, val_loader = build_loaders(
        splits["train"], splits["val"], spec, config.data, collate_fns, placement, sampler
    )
    model = build_model(config.model.model, spec, config.model.pretrained)
    initialise_weights(model, config.model.init)
    layout = task.memory_format
    model.to(runtime.device, memory_format=layout)
    if runtime.is_main:
        log.info("model:\n%s", model_summary(model, task.example_input(), runtime.device))
    ema = build_ema(model, config.optim.ema)  # a copy taken before compiling
    if config.model.compile:
        model.compile()  # in place: parameter names, and so checkpoints, stay the model's own
    optimizer = build_optimizer(model, config.optim)
    optimisation = Optimisation(
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config.optim, len(train_loader), config.run.epochs),
        accum_steps=config.optim.accum_steps,
        clip_grad_norm=config.optim.clip_grad_norm,
        precision=build_precision(config.extras, runtime.device, log),
        ema=ema,
    )
    run = config.run
    stopper = EarlyStopping(run.patience, run.min_delta, resolve_mode(run.monitor, run.mode))
    split = dataset.split_record(config.data, splits, spec, recorded)
    return Training(
        model,
        optimisation,
        stopper,
        Progress(),
        task,
        spec,
        train_loader,
        val_loader,
        layout,
        split,
    )


def check_has_validation_samples(val_split, samples: str) -> None:
    """A run whose validation split is empty could score nothing: refuse it before training.
    `samples`: what the split holds ("images", "texts")."""
    if len(val_split) == 0:
        raise UserError(
            f"the validation split has no {samples} (--val-fraction holds {samples} out only of "
            f"classes with 2 or more): add {samples}, or a validation split of its own"
        )


def open_run_folder(config: Config, run_dir: Path, is_new: bool, log) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    keep_log_in(run_dir)
    if is_new:
        text = config_yaml(config)
        (run_dir / "config.yaml").write_text(text)
        log.info("config:\n%s", text.rstrip())
    elif changes := update_config_yaml(run_dir / "config.yaml", config):
        log.info("config.yaml updated to this resume's flags: %s", ", ".join(changes))


def fit(
    config: Config,
    runtime: Runtime,
    training: Training,
    run_dir: Path,
    loggers: ExperimentLoggers,
    stop: StopRequest,
    log,
) -> None:
    """The epoch loop: train, evaluate, record, save, draw; stop early, on a signal or at the
    end."""
    trained_model = runtime.wrap(training.model, log)  # a multi-GPU wrapper, or the model
    progress, run = training.progress, config.run
    if progress.global_step == 0:
        loggers.log_start(training.model, functools.cache(lambda: sample_batch(training)))
    hooks = build_hooks(config, training, runtime, run_dir, log)
    started = time.perf_counter()
    for epoch in range(progress.epoch, last_epoch(run, progress)):
        training.train_loader.sampler.set_epoch(
            epoch, progress.batches_done * config.data.batch_size
        )
        train_stats = train_one_epoch(
            trained_model,
            training.train_loader,
            training,
            runtime,
            run.log_every,
            loggers.log_step,
            show_progress=runtime.is_main and not run.no_progress,
            should_stop=lambda: runtime.any_rank(stop.requested()),
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
        val_stats, selected_stats = validate(training, runtime, loggers_need_predictions())
        improved = training.stopper.update(selected_stats[run.monitor])
        progress.epoch = epoch + 1
        lr = training.optimisation.optimizer.param_groups[0]["lr"]
        record = epoch_record(
            progress.epoch, progress.global_step, lr, train_stats, val_stats, selected_stats
        )
        record.update({key: selected_stats[key] for key in training.task.recorded_extras})
        # The record goes before the checkpoint (a resume trims metrics.jsonl back to its
        # checkpoint); the figures after it, so that a stop signal arriving meanwhile loses no
        # trained epoch.
        loggers.log_epoch(record, progress.global_step, training.model)
        paths = [run_dir / "last.pt", *([run_dir / "best.pt"] if improved else [])]
        save_run_state(training, config, runtime, loggers.state_dict(), paths)
        log.info(epoch_line(record, run.epochs, training.task.declaration.headline))
        loggers.log_validation(selected_stats, progress.global_step)
        for hook in hooks:
            hook.after_validation(training.selecting_model, loggers)
        if runtime.rank0_decides(training.stopper.should_stop):
            log.info("early stopping: %s has not improved for %d epochs", run.monitor, run.patience)
            break
    runtime.check_replicas_agree(training.model, log)
    log.info("trained to epoch %d in %.1f s", progress.epoch, time.perf_counter() - started)
    for hook in hooks:
        hook.after_training(stop, loggers)
    loggers.finish({run.monitor: training.stopper.best}, run_dir / "best.pt")
    selected_by = f"ema_{run.monitor}" if training.optimisation.ema is not None else run.monitor
    log.info("best %s %.4f; run folder %s", selected_by, training.stopper.best, run_dir)


def last_epoch(run: RunConfig, progress: Progress) -> int:
    if run.stop_after_epochs is None:
        return run.epochs
    return min(run.epochs, progress.epoch + run.stop_after_epochs)


def sample_batch(training: Training):
    """One augmented batch's inputs for the loggers, drawn without disturbing the training RNG
    streams."""
    rng_state = capture_rng_state()
    inputs, _ = next(iter(training.train_loader))
    restore_rng_state(rng_state)
    return inputs
