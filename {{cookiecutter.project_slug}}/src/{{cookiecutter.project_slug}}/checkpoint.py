"""Atomic checkpoints that load with torch.load(weights_only=True) and resume exactly."""

import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import Config, DataConfig
from .data import class_count_of, image_size_of
from .ema import ExponentialMovingAverage
from .engine import Training
from .errors import UserError
from .image_folder import class_differences, folder_class_names
from .runtime import Runtime

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Fault-injection tests set this to a file path: a save then creates the file and waits, with
# the new checkpoint written but not yet renamed into place, so a kill can land right there.
HOLD_SAVE_ENV = "CHECKPOINT_TEST_HOLD_FILE"
log = logging.getLogger("train.data")


def atomic_save(payload: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        hold_for_fault_injection()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def hold_for_fault_injection() -> None:
    hold_file = os.environ.get(HOLD_SAVE_ENV)
    if hold_file:
        Path(hold_file).touch()
        time.sleep(60)


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """Drop the `module.` (DataParallel/DDP) and `_orig_mod.` (torch.compile) key prefixes."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        cleaned[key] = value
    return cleaned


def unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


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
        # order within an epoch: another value would turn training images into validation ones.
        "seed": config.run.seed,
        "val_fraction": config.data.val_fraction,
    }
    saved = {"ema": 0.0, "balanced_sampling": False, **saved}  # checkpoints from before them
    differences = [
        f"--{flag.replace('_', '-')} {saved.get(flag)}"
        for flag, value in current.items()
        if saved.get(flag) != value
    ]
    saved_size = state["data_spec"]["image_size"]
    if saved_size != image_size_of(config.data):
        differences.append(f"--image-size {saved_size}")
    if differences:
        raise UserError(
            f"checkpoint {path} was trained with {', '.join(differences)}: resume with the same "
            "flags, or start a new --name without --resume"
        )
    saved_classes, classes = len(state["data_spec"]["class_names"]), class_count_of(config.data)
    if saved_classes != classes:
        raise UserError(
            f"checkpoint {path} is a {saved['model']} for {saved_classes} classes, but this data "
            f"has {classes}: resume with the data it was trained on, or start a new --name "
            "without --resume"
        )
    check_same_class_names(path, state["data_spec"]["class_names"], config.data)
    return state


def check_same_class_names(path: Path, trained: list[str], data: DataConfig) -> None:
    """An image folder's classes by name: the same count under other names would give the
    model's outputs to other classes."""
    if data.dataset != "image_folder":
        return
    classes = folder_class_names(Path(data.data_dir))
    if classes != list(trained):
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


def capture_rng_state() -> dict:
    """Every generator a training step draws from, as plain Python data.

    Plain lists (not tensors) so the state also travels through DDP object collectives.
    """
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    python_version, python_internal, python_gauss = random.getstate()
    state = {
        "python": [python_version, list(python_internal), python_gauss],
        "numpy": [numpy_kind, numpy_keys.tolist(), numpy_pos, numpy_has_gauss, numpy_gauss],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [cuda_state.tolist() for cuda_state in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict) -> None:
    python_version, python_internal, python_gauss = state["python"]
    random.setstate((python_version, tuple(python_internal), python_gauss))
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = state["numpy"]
    numpy_state = (numpy_kind, np.array(numpy_keys, dtype=np.uint32), numpy_pos)
    np.random.set_state((*numpy_state, numpy_has_gauss, numpy_gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(
            [torch.tensor(cuda_state, dtype=torch.uint8) for cuda_state in state["cuda"]]
        )


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint of this project, or explain in one line why it cannot be used."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass a run folder's last.pt or best.pt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle means the file cannot be resumed from
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"checkpoint {path} is truncated or not a PyTorch checkpoint ({reason}): "
            "use another file, e.g. best.pt, or start a new run"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise UserError(
            f"{path} is not a checkpoint written by this project's train command: "
            "pass a last.pt or best.pt from a run folder"
        )
    return checkpoint


def load_model_weights(
    model: nn.Module, checkpoint: dict, path: Path, for_inference: bool = False
) -> None:
    """The trained weights; `for_inference`: the EMA's when the run kept one (--ema)."""
    saved = checkpoint["config"]
    weights = checkpoint["model"]
    if for_inference and "ema" in checkpoint:
        weights = checkpoint["ema"]["weights"]
    try:
        unwrap(model).load_state_dict(strip_wrapper_prefixes(weights))
    except RuntimeError:
        raise UserError(
            f"checkpoint {path} holds a {saved.get('model')} with "
            f"{len(checkpoint['data_spec']['class_names'])} "
            f"classes on {saved.get('dataset')}, which does not fit this model: pass the same "
            "--model and --dataset as the run that wrote it"
        ) from None
