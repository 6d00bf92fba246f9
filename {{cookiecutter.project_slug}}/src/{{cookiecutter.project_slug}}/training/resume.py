"""What a training run saves in last.pt / best.pt and restores on --resume: exactly where it
stood, or a one-line refusal when the checkpoint cannot fit this run."""

import json
import logging
from pathlib import Path

import torch

from ..config.schema import Config, DataConfig
from ..data.spec import DataSpec, class_differences
from ..datasets import dataset_info
from ..errors import UserError
from ..runs.checkpoint import (
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    unwrap,
)
from ..runs.runtime import Runtime
from ..tasks import declaration
from .ema import ExponentialMovingAverage
from .loop import Training

log = logging.getLogger("train.resume")


def save_run_state(
    training: Training,
    config: Config,
    runtime: Runtime,
    logger_state: dict,
    paths: list[Path],
) -> None:
    """Save the whole run state to each of `paths`: called by every rank, which contributes
    its RNG streams and unfinished-epoch sums; rank 0 writes. restore_run_state reads it."""
    progress, optimisation = training.progress, training.optimisation
    rank_states = runtime.gather((capture_rng_state(), progress.partial_sums))
    if not runtime.is_main:
        return
    state = {
        "model": unwrap(training.model).state_dict(),
        "optimizer": optimisation.optimizer.state_dict(),
        "scheduler": scheduler_position(optimisation.scheduler),
        "precision": optimisation.precision.state_dict(),
        **ema_state(optimisation.ema),
        "epoch": progress.epoch,
        "global_step": progress.global_step,
        "batches_done": progress.batches_done,
        "partial_sums": [partial_sums for _, partial_sums in rank_states],
        "rng": [rng for rng, _ in rank_states],
        "early_stopping": training.stopper.state_dict(),
        "monitor": config.run.monitor,
        "best_metric": training.stopper.best,
        "loggers": logger_state,
        "config": config.to_dict(),
        "data_spec": training.spec.to_dict(),
        **split_state(training.split_record),
    }
    for path in paths:
        atomic_save(state, path)


def split_state(record: dict | None) -> dict:
    """The run's carved train/val split, under "split" (nothing where folders fix the split)."""
    return {} if record is None else {"split": record}


def recorded_split(state: dict | None, data: DataConfig) -> dict | None:
    """The split a checkpoint recorded, when `data` is the folder it was recorded on. None for
    another folder, or a checkpoint written before splits were recorded: the split is then
    carved by the seed."""
    if state is None or "split" not in state:
        return None
    recorded_on = Path(state["config"]["data_dir"])
    if recorded_on.resolve() != Path(data.data_dir).resolve():
        log.info(
            "the checkpoint's split was recorded on %s, not %s: this folder's validation split "
            "is carved by --seed",
            recorded_on,
            data.data_dir,
        )
        return None
    return state["split"]


def write_split_file(run_dir: Path, record: dict | None) -> None:
    """split.json: the run's recorded split, for people and tools to read (resume and evaluate
    read the checkpoint's copy)."""
    if record is not None:
        text = json.dumps(record, indent=1, ensure_ascii=False)
        (run_dir / "split.json").write_text(text, encoding="utf-8")


def write_tokenizer_file(run_dir: Path, spec: DataSpec) -> None:
    """The run's tokenizer, where it has one, as tokenizer.json (its copy of record is the
    checkpoint's)."""
    if spec.tokenizer is not None:
        (run_dir / "tokenizer.json").write_text(spec.tokenizer, encoding="utf-8")


def load_resumable(path: Path, config: Config) -> dict:
    """The run state to resume from, refused before any data is read if it cannot fit."""
    state = load_checkpoint(path)
    saved = state["config"]
    current = {
        "dataset": config.data.dataset,
        "model": config.model.model,
        "optimizer": config.optim.optimizer,
        "ema": config.optim.ema,
        "balanced_sampling": config.data.balanced_sampling,  # decides the order within an epoch
        # Decide the validation split (a recorded one included: it was carved by them) and the
        # order within an epoch: another value would turn training samples into validation ones.
        "seed": config.data.seed,
        "val_fraction": config.data.val_fraction,
    }
    task = declaration(dataset_info(config.data.dataset).task)
    for flag in task.fixed_on_resume:
        value = getattr(config.data, flag)
        current[flag] = str(value) if isinstance(value, Path) else value
    saved = {"ema": 0.0, "balanced_sampling": False, **saved}  # checkpoints from before them
    differences = [
        flag_as_given(flag, saved.get(flag))
        for flag, value in current.items()
        if saved.get(flag) != value
    ]
    if differences:
        raise UserError(
            f"checkpoint {path} was trained with {', '.join(differences)}: resume with the same "
            "flags, or start a new --name without --resume"
        )
    check_resumed_classes(path, state, config.data)
    return state


def flag_as_given(flag: str, value) -> str:
    """How a run was started with `flag`: "--vocab-size 300", or "no --tokenizer" where it was
    not given."""
    name = "--" + flag.replace("_", "-")
    return f"no {name}" if value is None else f"{name} {value}"


def check_resumed_classes(path: Path, state: dict, data: DataConfig) -> None:
    """The data's classes, by count and by name: the same count under other names (renamed
    class folders) would give the model's outputs to other classes."""
    trained = list(state["data_spec"]["class_names"])
    classes = dataset_info(data.dataset).class_names(data)
    if len(trained) != len(classes):
        raise UserError(
            f"checkpoint {path} is a {state['config']['model']} for {len(trained)} classes, but "
            f"this data has {len(classes)}: resume with the data it was trained on, or start a "
            "new --name without --resume"
        )
    if classes != trained:
        raise UserError(
            f"checkpoint {path} was trained on the classes {', '.join(trained)}, but "
            f"{data.data_dir} has others ({class_differences(trained, classes)}): resume with "
            "the data it was trained on, or start a new --name without --resume"
        )


def restore_run_state(training: Training, state: dict, path: Path, rank: int) -> None:
    """Put a run back where save_run_state left it, this rank's RNG streams included."""
    load_model_weights(training.model, state, path)
    optimisation = training.optimisation
    optimisation.optimizer.load_state_dict(state["optimizer"])
    optimisation.scheduler.load_state_dict(state["scheduler"])
    optimisation.precision.load_state_dict(state["precision"])
    if optimisation.ema is not None:
        optimisation.ema.load_checkpoint_state(state["ema"])
    progress = training.progress
    progress.epoch = state["epoch"]
    progress.global_step = state["global_step"]
    progress.batches_done = state["batches_done"]
    progress.partial_sums = state["partial_sums"][rank % len(state["partial_sums"])]
    restore_rng_state(state["rng"][rank % len(state["rng"])])
    training.stopper.load_state_dict(state["early_stopping"])


def ema_state(ema: ExponentialMovingAverage | None) -> dict:
    """The EMA's weights and update count, under "ema" (nothing without --ema)."""
    return {} if ema is None else {"ema": ema.state_dict_for_checkpoint()}


def scheduler_position(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """The scheduler's position only: its schedule is rebuilt from the config on resume."""
    state = scheduler.state_dict()
    state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state
