"""Checkpoint files: written atomically, loaded with torch.load(weights_only=True), the model's
weights read from them whatever wrapper trained it; the RNG streams a resume restores."""

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError, first_line

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Fault-injection tests set this to a file path: a save then creates the file and waits, with
# the new checkpoint written but not yet renamed into place, so a kill can land right there.
HOLD_SAVE_ENV = "CHECKPOINT_TEST_HOLD_FILE"


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
        reason = first_line(error)
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
