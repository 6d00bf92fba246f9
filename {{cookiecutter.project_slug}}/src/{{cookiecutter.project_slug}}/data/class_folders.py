"""The user's own image folders: split layouts, class lists, and the up-front image check.

Layouts (split folder names are matched case-insensitively; SPLIT_ALIASES lists them):
- root/train/<class>/* and root/val/<class>/* (or valid/, validation/, eval/, dev/), optionally
  root/test/ (or testing/); train/ may be called training/
- root/train/<class>/* and root/test/<class>/*: val is carved from train by --val-fraction
- root/<class>/*: val is carved from all images by --val-fraction
Carving takes the same share of every class, chosen by the seed; a run records the split it
carved (split_manifest), and reusing the record keeps that split whatever files come and go.
Every split must have the same class folders, compared by their names in Unicode NFC (macOS
and Linux tools write accents differently); split folders never become classes. Hidden folders
(.ipynb_checkpoints) and __MACOSX folders are skipped at every depth; they and every other file
that is not an image in a class folder are named in one log line.
"""

import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .image_check import find_unreadable
from .image_files import is_image_file
from .spec import class_differences

SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "eval", "dev"),
    "test": ("test", "testing"),
}
ALL_SPLIT_NAMES = frozenset(alias for aliases in SPLIT_ALIASES.values() for alias in aliases)
LISTED = 5  # file names quoted in one log or error line

Sample = tuple[Path, int]
log = logging.getLogger("train.data")


@dataclass(frozen=True)
class ImageFolder:
    """Samples per split ("train", "val" and, when the folder has one, "test"), each class's
    samples together, in class order."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, list[Sample]]


def read_image_folder(
    root: Path,
    val_fraction: float,
    seed: int,
    skip_bad_images: bool,
    recorded: dict | None = None,
) -> ImageFolder:
    """Find the layout, list every image, and check each one fully before training starts.

    A carved val split reuses `recorded` (a run's split_record) when given, else is carved by
    `val_fraction` and `seed`.
    """
    folders = split_folders(root)
    classes = class_names(folders.get("train", root))
    for folder in folders.values():
        check_split_class_folders(folders.get("train", root), folder, classes)
    listed = {split: list_images(folder, classes) for split, folder in folders.items()}
    not_images = [path for _, other_files in listed.values() for path in other_files]
    report_ignored(root, outside_class_folders(root, folders) + not_images)
    samples = {split: images for split, (images, _) in listed.items()}
    samples = drop_unreadable(root, samples, skip_bad_images)
    check_every_class_kept_images(folders, samples, classes)
    if "val" not in samples:
        pool = samples.pop("all" if "all" in samples else "train")
        if recorded is None:
            samples["train"], samples["val"] = carve(pool, classes, val_fraction, seed)
        else:
            samples["train"], samples["val"] = reuse_recorded(root, pool, classes, recorded)
    return ImageFolder(root, tuple(classes), samples)


def folder_class_names(root: Path) -> list[str]:
    """The class folders of a data folder's layout, found without opening an image."""
    return class_names(split_folders(root).get("train", root))


def carves_validation(root: Path) -> bool:
    """Whether the val split is carved out of the images (no val folder), so can be recorded."""
    return "val" not in split_folders(root)


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
                f"data folder {root} has {len(matches)} {split} folders ({names(matches)}; "
                f"{', '.join(aliases)} all name the {split} split): keep one"
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
    return is_hidden_name(entry.name)


def is_hidden_name(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def outside_class_folders(root: Path, folders: dict[str, Path]) -> list[Path]:
    """Files beside the class folders, and hidden folders among them: none of it is read."""
    places = {root, *folders.values()}
    entries = [entry for place in places for entry in place.iterdir()]
    return sorted(entry for entry in entries if entry.is_file() or is_hidden(entry))


def names(paths: list[Path]) -> str:
    return ", ".join(path.name for path in paths)


def class_folders(folder: Path) -> dict[str, Path]:
    """{class name in NFC: its folder}, in the folders' order."""
    found = {}
    for entry in subfolders_of(folder):
        name = unicodedata.normalize("NFC", entry.name)
        if name in found:
            raise UserError(
                f"data folder {folder} has two class folders named {name}, written in two Unicode "
                "forms (as macOS and Linux tools do): merge them into one folder"
            )
        found[name] = entry
    return found


def class_names(folder: Path) -> list[str]:
    classes = list(class_folders(folder))
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


def check_split_class_folders(reference: Path, folder: Path, classes: list[str]) -> None:
    found = list(class_folders(folder))
    if set(found) != set(classes):
        raise UserError(
            f"class folders of {folder} differ from {reference} "
            f"({class_differences(classes, found)}): give every split the same class folders"
        )


def list_images(folder: Path, classes: list[str]) -> tuple[list[Sample], list[Path]]:
    """(image samples, files that are not images and hidden folders) under folder/<class>/,
    in sorted order."""
    samples, ignored = [], []
    folders = class_folders(folder)
    for label, name in enumerate(classes):
        class_folder = folders[name]
        files, hidden_folders = files_under(class_folder)
        images = [path for path in files if is_image_file(path)]
        ignored += [path for path in files if not is_image_file(path)] + hidden_folders
        if not images:
            raise UserError(
                f"class folder {class_folder} has no images (jpg, png, bmp, gif, webp, tif, ...):"
                " add images or remove the folder"
            )
        samples += [(path, label) for path in images]
    return samples, ignored


def files_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """(every file under `folder`, the hidden folders skipped on the way), each sorted."""
    files, hidden = [], []
    for parent, subfolders, file_names in os.walk(folder):
        here = Path(parent)
        hidden += [here / name for name in subfolders if is_hidden_name(name)]
        subfolders[:] = [name for name in subfolders if not is_hidden_name(name)]
        files += [here / name for name in file_names if (here / name).is_file()]
    return sorted(files), sorted(hidden)


def check_every_class_kept_images(
    folders: dict[str, Path], samples: dict[str, list[Sample]], classes: list[str]
) -> None:
    """After --skip-bad-images: a class folder whose every image was unreadable is refused."""
    for split, split_samples in samples.items():
        kept = {label for _, label in split_samples}
        for label, name in enumerate(classes):
            if label not in kept:
                raise UserError(
                    f"class {name} has no readable image left in {folders[split]} "
                    "(--skip-bad-images skipped them all): fix or replace its images, or remove "
                    "the class folder"
                )


def report_ignored(root: Path, ignored: list[Path]) -> None:
    if ignored:
        log.info(
            "ignored %d file(s) or folder(s) that are not class images: %s",
            len(ignored),
            quoted(root, ignored),
        )


def quoted(root: Path, paths: list[Path]) -> str:
    shown = ", ".join(str(path.relative_to(root)) for path in paths[:LISTED])
    return shown + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


def carve(
    samples: list[Sample], classes: list[str], val_fraction: float, seed: int
) -> tuple[list, list]:
    """Hold out the same share of every class, chosen by the seed alone."""
    generator = np.random.default_rng(seed)
    train, val = [], []
    labels = sorted({label for _, label in samples})
    for label in labels:
        members = [sample for sample in samples if sample[1] == label]
        held_out = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        if held_out == len(members):
            raise UserError(
                f"class {classes[label]} would have no training images: --val-fraction "
                f"{val_fraction} holds out all {len(members)} of its images for validation: "
                f"lower --val-fraction, or add images of {classes[label]}"
            )
        order = generator.permutation(len(members))
        val += [members[i] for i in sorted(order[:held_out])]
        train += [members[i] for i in sorted(order[held_out:])]
    return train, val


def split_manifest(root: Path, classes: tuple[str, ...], splits: dict[str, list[Sample]]) -> dict:
    """The train and val images as plain data: {split: {path relative to root: class name}}."""
    return {
        split: {relative_name(root, path): classes[label] for path, label in splits[split]}
        for split in ("train", "val")
    }


def relative_name(root: Path, path: Path) -> str:
    """The path's name in a split record, the same on every system: '/'-separated, in NFC."""
    return unicodedata.normalize("NFC", path.relative_to(root).as_posix())


def reuse_recorded(
    root: Path, pool: list[Sample], classes: list[str], recorded: dict
) -> tuple[list, list]:
    """The recorded train and val images that are still there, in the pool's order. Images
    added since belong to neither: the run keeps the data it started with."""
    named = [(relative_name(root, path), (path, label)) for path, label in pool]
    splits = {}
    for split in ("train", "val"):
        names_in_split = set(recorded[split])
        splits[split] = [sample for name, sample in named if name in names_in_split]
    kept = len(splits["train"]) + len(splits["val"])
    added, removed = len(pool) - kept, len(recorded["train"]) + len(recorded["val"]) - kept
    if added or removed:
        log.info(
            "data folder %s changed since this run's split was recorded: %d image(s) added "
            "(not used by this run: train a new run to use them), %d removed (dropped); the "
            "split now holds %d training and %d validation image(s)",
            root,
            added,
            removed,
            len(splits["train"]),
            len(splits["val"]),
        )
    check_recorded_training_images(root, classes, recorded, splits["train"])
    return splits["train"], splits["val"]


def check_recorded_training_images(
    root: Path, classes: list[str], recorded: dict, train: list[Sample]
) -> None:
    """Every class keeps a training image of the recorded split."""
    trained = {label for _, label in train}
    recorded_classes = set(recorded["train"].values())
    for label, name in enumerate(classes):
        if label in trained:
            continue
        if name in recorded_classes:
            raise UserError(
                f"class {name} has no training image left of this run's recorded split "
                f"(split.json): restore its images in {root}, or train a new run"
            )
        raise UserError(
            f"class folder {name} in {root} is not in this run's recorded split (split.json): "
            "give the folder the class folders the run trained on, or train a new run"
        )


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
