"""A small real-photo image-classification folder on disk, like a user's own photos.

Every picture is a crop of a photograph bundled inside scikit-image's wheel, so building one
needs no network. Nothing here imports torch.
"""

from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data

# Class name -> bundled photo; `classes=n` takes the first n. The three grey textures come first:
# their mean brightness is nearly the same, so a model has to learn texture, not colour.
# Only near-stationary photos qualify: each split crops its own part of the photo (see REGIONS),
# and a scene photo (sklearn's china, flower; coffee, chelsea) has different content in each part.
SOURCES = {
    "brick": data.brick,
    "grass": data.grass,
    "gravel": data.gravel,
    "tissue": data.immunohistochemistry,
    "stars": data.hubble_deep_field,
}
# Disjoint part of each photo per split, as (left, top, right, bottom) fractions, so that
# validation and test crops never share pixels with training crops.
REGIONS = {"train": (0.0, 0.0, 0.5, 1.0), "val": (0.5, 0.0, 1.0, 0.5), "test": (0.5, 0.5, 1.0, 1.0)}
# (extension, mode) pool that every run of len(FORMATS) consecutive files uses once: mostly RGB
# JPEG, plus the odd formats and modes a real photo folder collects.
FORMATS = [(".jpg", "RGB")] * 10 + [
    (".JPG", "RGB"),
    (".jpeg", "RGB"),
    (".jpg", "L"),
    (".png", "RGB"),
    (".png", "RGBA"),
    (".png", "I;16"),
    (".webp", "RGB"),
    (".bmp", "RGB"),
    (".tif", "RGB"),
    (".tiff", "RGB"),
    (".gif", "P"),
]
MIN_SIDE, MAX_SIDE = 50, 130
FLAT = "all"  # the counts key of the flat layout's single split


def build_photo_folder(
    root: Path,
    layout: str = "train_val",
    *,
    classes: int = 4,
    train_per_class: int = 40,
    val_per_class: int = 12,
    test_per_class: int = 0,
    seed: int = 0,
) -> dict:
    """Write the dataset under `root`; layouts: "train_val", "train_test", "flat".

    Returns {"classes": [...], "counts": {split: {class: n}}, "formats": {extension: n}}, the
    flat layout counting its files under the split "all".
    """
    if not 3 <= classes <= len(SOURCES):
        raise ValueError(f"classes must be 3..{len(SOURCES)}, not {classes}")
    rng = np.random.default_rng(seed)
    names = sorted(list(SOURCES)[:classes])
    jobs = [
        (folder, region, name)
        for folder, region, count in _plan(layout, train_per_class, val_per_class, test_per_class)
        for name in names
        for _ in range(count)
    ]
    counts: dict[str, Counter] = {}
    formats: Counter = Counter()
    for index, ((folder, region, name), (extension, mode)) in enumerate(
        zip(jobs, _format_sequence(rng, len(jobs)), strict=True)
    ):
        photo = _crop(rng, _source(name), REGIONS[region])
        _save(photo, root / folder / name / f"img_{index:04d}{extension}", mode)
        counts.setdefault(folder or FLAT, Counter())[name] += 1
        formats[extension] += 1
    return {
        "classes": names,
        "counts": {split: dict(per_class) for split, per_class in counts.items()},
        "formats": dict(formats),
    }


def _plan(layout: str, train: int, val: int, test: int) -> list[tuple[str, str, int]]:
    """(folder under root, region of the photo, images per class) for each split."""
    if layout == "train_val":
        plan = [("train", "train", train), ("val", "val", val), ("test", "test", test)]
    elif layout == "train_test":
        plan = [("train", "train", train), ("test", "test", test or val)]
    elif layout == "flat":
        plan = [("", "train", train), ("", "val", val)]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return [step for step in plan if step[2] > 0]


def _format_sequence(rng: np.random.Generator, length: int) -> list[tuple[str, str]]:
    """Shuffled copies of FORMATS back to back: every format turns up in each class folder."""
    rounds = -(-length // len(FORMATS))
    order = np.concatenate([rng.permutation(len(FORMATS)) for _ in range(rounds)])
    return [FORMATS[i] for i in order[:length]]


@cache
def _source(name: str) -> Image.Image:
    return Image.fromarray(SOURCES[name]()).convert("RGB")


def _crop(rng: np.random.Generator, photo: Image.Image, region: tuple) -> Image.Image:
    """A random crop inside `region`, resized to MIN_SIDE..MAX_SIDE a side, exposure jittered."""
    width, height = _output_size(rng)
    left, top, right, bottom = (f * s for f, s in zip(region, photo.size * 2, strict=True))
    # Crops of 20-50% of the photo's shorter side, so object scale varies as in real photos.
    side = min(photo.size) * rng.uniform(0.2, 0.5)
    stretch = np.sqrt(width / height)
    crop_w = min(side * stretch, right - left)
    crop_h = min(side / stretch, bottom - top)
    x = rng.uniform(left, right - crop_w)
    y = rng.uniform(top, bottom - crop_h)
    box = (x, y, x + crop_w, y + crop_h)
    resized = photo.resize((width, height), Image.Resampling.LANCZOS, box=box)
    return ImageEnhance.Brightness(resized).enhance(rng.uniform(0.85, 1.15))


def _output_size(rng: np.random.Generator) -> tuple[int, int]:
    aspect = rng.uniform(0.75, 4 / 3)
    height = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    width = int(np.clip(round(height * aspect), MIN_SIDE, MAX_SIDE))
    return width, height


def _save(image: Image.Image, path: Path, mode: str) -> None:
    if mode == "I;16":
        # Full 16-bit range, as scanners and raw converters write it, not 8-bit values in 16 bits.
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    elif mode == "P":
        image = image.quantize(256)
    else:
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
