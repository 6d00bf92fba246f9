"""The user's own image folders: split layouts, class lists, and the up-front image check.

Layouts (folder names are matched case-insensitively):
- root/train/<class>/* and root/val/<class>/* (or valid/, validation/), optionally root/test/
- root/train/<class>/* and root/test/<class>/*: val is carved from train by --val-fraction
- root/<class>/*: val is carved from all images by --val-fraction
Carving takes the same share of every class, chosen by the seed. Every split must have the
same class folders; split folders never become classes. Hidden folders (.ipynb_checkpoints)
and __MACOSX folders are never classes either; they and every other file that is not an image
in a class folder are named in one log line.
"""

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .image_files import is_image_file, load_rgb

SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
ALL_SPLIT_NAMES = frozenset(alias for aliases in SPLIT_ALIASES.values() for alias in aliases)
LISTED = 5  # file names quoted in one log or error line
PARALLEL_CHECK_MIN = 256  # fewer files are checked faster than processes start

Sample = tuple[Path, int]
log = logging.getLogger("train.data")


@dataclass(frozen=True)
class ImageFolder:
    """Samples per split ("train", "val" and, when the folder has one, "test")."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, list[Sample]]


def read_image_folder(
    root: Path, val_fraction: float, seed: int, skip_bad_images: bool
) -> ImageFolder:
    """Find the layout, list every image, and check each one fully before training starts."""
    folders = split_folders(root)
    classes = class_names(folders.get("train", root))
    for folder in folders.values():
        check_same_classes(folders.get("train", root), folder, classes)
    listed = {split: list_images(folder, classes) for split, folder in folders.items()}
    not_images = [path for _, other_files in listed.values() for path in other_files]
    report_ignored(root, outside_class_folders(root, folders) + not_images)
    samples = {split: images for split, (images, _) in listed.items()}
    samples = drop_unreadable(root, samples, skip_bad_images)
    if "all" in samples:
        samples["train"], samples["val"] = carve(samples.pop("all"), val_fraction, seed)
    elif "val" not in samples:
        samples["train"], samples["val"] = carve(samples["train"], val_fraction, seed)
    return ImageFolder(root, tuple(classes), samples)


def folder_class_names(root: Path) -> list[str]:
    """The class folders of a data folder's layout, found without opening an image."""
    return class_names(split_folders(root).get("train", root))


def has_split_folders(root: Path) -> bool:
    return root.is_dir() and any(
        entry.is_dir() and entry.name.lower() in ALL_SPLIT_NAMES for entry in root.iterdir()
    )


def split_folders(root: Path) -> dict[str, Path]:
    """{"train": ..., "val": ..., "test": ...} as present, or {"all": root} for class folders."""
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist or is not a folder: check --data-dir")
    subfolders = subfolders_of(root)
    split_named = [entry for entry in subfolders if entry.name.lower() in ALL_SPLIT_NAMES]
    if not split_named:
        return {"all": root}
    others = [entry.name for entry in subfolders if entry not in split_named]
    if others:
        raise UserError(
            f"data folder {root} mixes split folders ({names(split_named)}) with other folders "
            f"({', '.join(others)}): put every class folder inside {root}/train (and val, test)"
        )
    folders = {}
    for split, aliases in SPLIT_ALIASES.items():
        matches = [entry for entry in split_named if entry.name.lower() in aliases]
        if len(matches) > 1:
            raise UserError(
                f"data folder {root} has {len(matches)} {split} folders ({names(matches)}): "
                "keep one"
            )
        if matches:
            folders[split] = matches[0]
    if "train" not in folders:
        raise UserError(
            f"data folder {root} has {names(split_named)} but no train folder: "
            f"expected {root}/train/<class>/<images>"
        )
    return folders


def subfolders_of(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if entry.is_dir() and not is_hidden(entry))


def is_hidden(entry: Path) -> bool:
    return entry.name.startswith(".") or entry.name == "__MACOSX"


def outside_class_folders(root: Path, folders: dict[str, Path]) -> list[Path]:
    """Files beside the class folders, and hidden folders among them: none of it is read."""
    places = {root, *folders.values()}
    entries = [entry for place in places for entry in place.iterdir()]
    return sorted(entry for entry in entries if entry.is_file() or is_hidden(entry))


def names(paths: list[Path]) -> str:
    return ", ".join(path.name for path in paths)


def class_names(folder: Path) -> list[str]:
    classes = [entry.name for entry in subfolders_of(folder)]
    if not classes:
        raise UserError(
            f"data folder {folder} has no class folders: expected {folder}/<class>/<images>"
        )
    if len(classes) < 2:
        raise UserError(
            f"data folder {folder} has only one class ({classes[0]}): "
            "a classifier needs two or more"
        )
    return classes


def check_same_classes(reference: Path, folder: Path, classes: list[str]) -> None:
    found = {entry.name for entry in subfolders_of(folder)}
    missing, extra = sorted(set(classes) - found), sorted(found - set(classes))
    if missing or extra:
        differences = [f"missing {', '.join(missing)}"] if missing else []
        differences += [f"extra {', '.join(extra)}"] if extra else []
        raise UserError(
            f"class folders of {folder} differ from {reference} ({'; '.join(differences)}): "
            "give every split the same class folders"
        )


def list_images(folder: Path, classes: list[str]) -> tuple[list[Sample], list[Path]]:
    """(image samples, files that are not images) under folder/<class>/, in sorted order."""
    samples, ignored = [], []
    for label, name in enumerate(classes):
        class_folder = folder / name
        files = sorted(path for path in class_folder.rglob("*") if path.is_file())
        images = [path for path in files if is_image_file(path)]
        ignored += [path for path in files if not is_image_file(path)]
        if not images:
            raise UserError(
                f"class folder {class_folder} has no images (jpg, png, bmp, gif, webp, tif, ...):"
                " add images or remove the folder"
            )
        samples += [(path, label) for path in images]
    return samples, ignored


def report_ignored(root: Path, ignored: list[Path]) -> None:
    if ignored:
        log.info(
            "ignored %d file(s) or folder(s) that are not images in class folders: %s",
            len(ignored),
            quoted(root, ignored),
        )


def quoted(root: Path, paths: list[Path]) -> str:
    shown = ", ".join(str(path.relative_to(root)) for path in paths[:LISTED])
    return shown + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


def carve(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list, list]:
    """Hold out the same share of every class, chosen by the seed alone."""
    generator = np.random.default_rng(seed)
    train, val = [], []
    labels = sorted({label for _, label in samples})
    for label in labels:
        members = [sample for sample in samples if sample[1] == label]
        held_out = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        order = generator.permutation(len(members))
        val += [members[i] for i in sorted(order[:held_out])]
        train += [members[i] for i in sorted(order[held_out:])]
    return train, val


def drop_unreadable(
    root: Path, samples: dict[str, list[Sample]], skip_bad_images: bool
) -> dict[str, list[Sample]]:
    paths = [path for split in samples.values() for path, _ in split]
    problems = find_unreadable(root, paths)
    if not problems:
        return samples
    bad = sorted(problems)
    described = "; ".join(f"{path.relative_to(root)} ({problems[path]})" for path in bad[:LISTED])
    if not skip_bad_images:
        more = f" and {len(bad) - LISTED} more" if len(bad) > LISTED else ""
        raise UserError(
            f"{len(bad)} unreadable image(s) in {root}: {described}{more}; "
            "fix or remove them, or pass --skip-bad-images"
        )
    log.info("skipped %d unreadable image(s): %s", len(bad), quoted(root, bad))
    return {
        split: [sample for sample in split_samples if sample[0] not in problems]
        for split, split_samples in samples.items()
    }


def find_unreadable(root: Path, paths: list[Path]) -> dict[Path, str]:
    """Decode every image fully on all cores; files unchanged since the last check are cached."""
    cache_file = check_cache_file(root)
    cached = read_cache(cache_file)
    results, to_check = {}, []
    for path in paths:
        stamp = file_stamp(path)
        entry = cached.get(str(path))
        if entry is not None and entry[:2] == stamp:
            results[str(path)] = entry
        else:
            to_check.append((path, stamp))
    started = time.perf_counter()
    problems = problems_of([path for path, _ in to_check])
    for (path, stamp), problem in zip(to_check, problems, strict=True):
        results[str(path)] = [*stamp, problem]
    seconds = time.perf_counter() - started
    if to_check:
        log.info(
            "checked %d image(s) in %.1f s (%.0f images/s), %d unchanged since the last check",
            len(to_check),
            seconds,
            len(to_check) / max(seconds, 1e-9),
            len(paths) - len(to_check),
        )
        write_cache(cache_file, results)
    return {Path(key): entry[2] for key, entry in results.items() if entry[2]}


def problems_of(paths: list[Path]) -> list[str]:
    """image_problem for each path, in processes on every core when there are enough files to
    repay starting them (decoding holds the GIL too long for threads to help)."""
    cores = available_cores()
    if cores < 2 or len(paths) < PARALLEL_CHECK_MIN:
        return [image_problem(path) for path in paths]
    chunk = min(256, max(1, len(paths) // (4 * cores)))
    with ProcessPoolExecutor(max_workers=cores) as pool:
        return list(pool.map(image_problem, paths, chunksize=chunk))


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def image_problem(path: Path) -> str:
    """'' for an image that decodes completely, else why it does not."""
    try:
        load_rgb(path)
    except Exception as error:  # Pillow raises many types for broken files; all mean "unreadable"
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return ""


def file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def check_cache_file(root: Path) -> Path:
    """One cache file per data folder, in the user's cache directory (never in the data)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return base / __name__.split(".")[0] / "image-checks" / f"{key}.json"


def read_cache(cache_file: Path) -> dict:
    try:
        cached = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def write_cache(cache_file: Path, results: dict) -> None:
    """Atomic, so processes checking the same folder at once never read a torn file."""
    temporary = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(results))
        os.replace(temporary, cache_file)
    except OSError:
        temporary.unlink(missing_ok=True)  # a cache that cannot be written only costs time
