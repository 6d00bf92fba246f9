"""The datasets this project trains on: one module each, registering itself with its facts.

Adding a dataset is adding a module to this folder that calls `register(DatasetInfo(...))`;
its name becomes a --dataset choice. This file imports no torch: the flags list the modules
without importing them, so --help stays instant.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


def nothing_to_record(config, splits, spec, recorded):
    """A split that folders or the seed alone fix: nothing to record."""
    return None


def never_whole(data_dir) -> bool:
    return False


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the project needs to know about a dataset.

    `build(config, augment, recorded_split, trained_spec)` returns ({"train", "val"[, "test"]:
    Dataset}, spec), where `trained_spec` is the spec of the checkpoint a run resumes or evaluate
    scores (None for a new run): a dataset whose spec is learned from its data (a tokenizer)
    reuses it, one whose input shape the model fixes (an image size) refuses another;
    `class_names(config)` the classes, known without reading a sample (resume checks);
    `split_record(config, splits, spec, recorded)` the carved split a run records, if any;
    `scored_whole(data_dir)` whether evaluate scores every sample of a --data-dir by default
    (a folder without split folders).
    """

    name: str
    task: str  # the tasks/ package that trains on it
    build: Callable
    class_names: Callable
    needs_data_dir: bool = False
    decodes_files: bool = False  # DataLoader worker processes pay off
    split_record: Callable = nothing_to_record
    scored_whole: Callable = never_whole


REGISTERED: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    REGISTERED[info.name] = info
    return info


def dataset_names() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def dataset_info(name: str) -> DatasetInfo:
    importlib.import_module(f"{__name__}.{name}")
    if name not in REGISTERED:
        raise LookupError(f"datasets/{name}.py registers no DatasetInfo named {name!r}")
    return REGISTERED[name]


def build_datasets(
    config, augment: bool = True, recorded_split: dict | None = None, trained_spec=None
):
    """The "train", "val" (and "test") datasets and the spec of --dataset.

    augment=False gives the train split the eval transforms (for scoring every sample);
    `recorded_split`: the split a run recorded, which a carved split reuses; `trained_spec`:
    the checkpoint's spec, which a learned one (a tokenizer) is taken from.
    """
    return dataset_info(config.dataset).build(config, augment, recorded_split, trained_spec)
