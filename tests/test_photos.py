"""The real-photo dataset builder writes the folders, counts and file kinds it promises."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photos import build_photo_folder

LAYOUTS = {
    # layout: (extra arguments, expected images per class in each folder under root)
    "train_val": ({"test_per_class": 5}, {"train": 40, "val": 12, "test": 5}),
    "train_test": ({}, {"train": 40, "test": 12}),
    "flat": ({}, {".": 52}),
}


def files_in(folder):
    return sorted(path for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_has_its_folders_counts_and_readable_photos(tmp_path, layout):
    extra, expected = LAYOUTS[layout]
    info = build_photo_folder(tmp_path, layout, **extra)

    classes = info["classes"]
    assert len(classes) == 4 and classes == sorted(classes)
    folders = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_dir()}
    class_folders = {Path(split, name) for split in expected for name in classes}
    assert folders == class_folders | {Path(split) for split in expected} - {Path(".")}
    for split, per_class in expected.items():
        for name in classes:
            assert len(files_in(tmp_path / split / name)) == per_class
    split_names = {".": "all"}
    assert info["counts"] == {
        split_names.get(split, split): dict.fromkeys(classes, n) for split, n in expected.items()
    }

    paths = files_in(tmp_path)
    assert sum(info["formats"].values()) == len(paths)
    assert len({path.suffix.lower() for path in paths}) > 1
    deep_greys = []
    for path in paths:
        with Image.open(path) as image:
            image.load()
            assert all(50 <= side <= 130 for side in image.size), path
            if image.mode in ("I;16", "I"):
                deep_greys.append(int(np.asarray(image).max()))
    assert deep_greys and max(deep_greys) > 255


def test_same_seed_same_bytes(tmp_path):
    def snapshot(root, seed):
        build_photo_folder(root, train_per_class=6, val_per_class=3, seed=seed)
        return {path.relative_to(root): path.read_bytes() for path in files_in(root)}

    first = snapshot(tmp_path / "a", seed=7)
    assert snapshot(tmp_path / "b", seed=7) == first
    assert snapshot(tmp_path / "c", seed=8) != first
