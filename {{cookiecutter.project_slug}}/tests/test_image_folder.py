"""image_folder: layouts, every image format and mode, and the up-front check."""

import io
import json
import logging
import math
import shutil
import unicodedata

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.image_files import load_rgb
from {{ cookiecutter.project_slug }}.data.transforms import photo_transforms
from {{ cookiecutter.project_slug }}.datasets import build_datasets, dataset_info
from {{ cookiecutter.project_slug }}.errors import UserError, run_reporting_user_errors
from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main
from {{ cookiecutter.project_slug }}.training.resume import load_resumable, recorded_split


@pytest.fixture(autouse=True)
def private_check_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def write_images(folder, count: int, size=(12, 10)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("RGB", size, color=(index * 20 % 255, 0, 0)).save(folder / f"{index}.png")


def image_folder(root, *flags: str):
    config = parse_config(
        ["--dataset", "image_folder", "--data-dir", str(root), "--image-size", "16", *flags]
    )
    return build_datasets(config.data)


def split_sizes(splits: dict) -> dict:
    return {name: len(dataset) for name, dataset in splits.items()}


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val", "eval", "DEV"])
def test_train_and_val_folders(tmp_path, val_name):
    for name in ("cat", "dog"):
        write_images(tmp_path / "train" / name, 4)
        write_images(tmp_path / val_name / name, 2)
    splits, spec = image_folder(tmp_path)
    assert spec.class_names == ("cat", "dog")
    assert split_sizes(splits) == {"train": 8, "val": 4}


@pytest.mark.parametrize(
    "train_name, val_name, test_name",
    [("training", None, "testing"), ("Training", "dev", "Testing"), ("TRAIN", "Eval", "test")],
)
def test_common_split_names_never_become_classes(tmp_path, train_name, val_name, test_name):
    for split, count in ((train_name, 5), (val_name, 2), (test_name, 3)):
        for name in ("cat", "dog") if split else ():
            write_images(tmp_path / split / name, count, size=(8, 8))
    splits, spec = image_folder(tmp_path)
    assert spec.class_names == ("cat", "dog")
    expected = {"train": 10, "val": 4} if val_name else {"train": 8, "val": 2}
    assert split_sizes(splits) == {**expected, "test": 6}


def test_train_and_test_folders_carve_val_from_train(tmp_path):
    for name in ("cat", "dog", "fox"):
        write_images(tmp_path / "train" / name, 10)
        write_images(tmp_path / "test" / name, 3)
    splits, spec = image_folder(tmp_path, "--val-fraction", "0.2")
    assert spec.class_names == ("cat", "dog", "fox")  # never "train" and "test"
    assert split_sizes(splits) == {"train": 24, "val": 6, "test": 9}
    val_labels = [label for _, label in splits["val"].samples]
    assert sorted(val_labels) == [0, 0, 1, 1, 2, 2]  # the same share of every class


def test_train_val_and_test_folders(tmp_path):
    for split, count in (("train", 5), ("val", 2), ("test", 3)):
        for name in ("a", "b"):
            write_images(tmp_path / split / name, count)
    splits, _ = image_folder(tmp_path)
    assert split_sizes(splits) == {"train": 10, "val": 4, "test": 6}


def test_class_folders_split_by_seed(tmp_path):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 5)
    first, spec = image_folder(tmp_path, "--seed", "3")
    second, _ = image_folder(tmp_path, "--seed", "3")
    assert spec.class_names == ("cat", "dog")
    assert first["val"].samples == second["val"].samples
    assert not set(first["val"].samples) & set(first["train"].samples)
    assert split_sizes(first) == {"train": 8, "val": 2}


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"train/cat": 3, "train/dog": 3, "val/cat": 2, "val/bird": 2}, "missing dog; extra bird"),
        ({"train/cat": 3, "train/dog": 3, "test/cat": 2}, "missing dog"),
        ({"train/cat": 3, "train/dog": 3, "cat": 2}, "mixes split folders (train)"),
        ({"val/cat": 3, "val/dog": 3}, "no train folder"),
        ({"train/a": 3, "train/b": 3, "val/a": 1, "val/b": 1, "valid/a": 1}, "2 val folders"),
        ({"train/a": 3, "train/b": 3, "val/a": 1, "dev/a": 1}, "2 val folders (dev, val;"),
        ({"train/a": 3, "training/a": 3}, "2 train folders (train, training;"),
        ({"train/a": 3, "train/b": 3, "TEST/a": 1, "testing/a": 1}, "2 test folders"),
        ({"train/a": 3}, "only one class (a)"),
    ],
)
def test_layout_mistakes_are_named(tmp_path, layout, message):
    for folder, count in layout.items():
        write_images(tmp_path / folder, count)
    with pytest.raises(UserError) as raised:
        image_folder(tmp_path)
    assert message in str(raised.value)


def save(image: Image.Image, path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def grey(mode: str, value, size=(6, 4)) -> Image.Image:
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    return Image.fromarray(np.full(size[::-1], value, dtype=dtype))


@pytest.mark.parametrize(
    "name, image, expected",
    [
        ("16bit.png", grey("I;16", 32896), (128, 128, 128)),
        ("int32.tif", grey("I", 32896), (128, 128, 128)),
        ("int32-8bit.tif", grey("I", 200), (200, 200, 200)),
        ("float.tif", grey("F", 0.5), (128, 128, 128)),
        ("one-bit.png", Image.new("1", (6, 4), 1), (255, 255, 255)),
        ("grey.jpg", Image.new("L", (6, 4), 90), (90, 90, 90)),
        ("transparent.png", Image.new("RGBA", (6, 4), (255, 0, 0, 0)), (255, 255, 255)),
        ("opaque.png", Image.new("RGBA", (6, 4), (255, 0, 0, 255)), (255, 0, 0)),
        ("grey-alpha.png", Image.new("LA", (6, 4), (0, 0)), (255, 255, 255)),
        ("cmyk.tiff", Image.new("CMYK", (6, 4), (0, 255, 255, 0)), (255, 0, 0)),
        ("palette.gif", Image.new("RGB", (6, 4), (0, 0, 255)).convert("P"), (0, 0, 255)),
        ("upper.JPEG", Image.new("RGB", (6, 4), (0, 200, 0)), (0, 200, 0)),
        ("photo.webp", Image.new("RGB", (6, 4), (0, 200, 0)), (0, 200, 0)),
        ("photo.bmp", Image.new("RGB", (6, 4), (0, 200, 0)), (0, 200, 0)),
    ],
)
def test_every_mode_becomes_the_rgb_a_viewer_shows(tmp_path, name, image, expected):
    path = tmp_path / name
    save(image, path, **({"lossless": True} if name.endswith(".webp") else {}))
    rgb = np.asarray(load_rgb(path)).astype(int)
    assert rgb.shape == (4, 6, 3)
    assert np.abs(rgb - expected).max() <= (3 if name.endswith((".jpg", ".JPEG")) else 0)


def test_palette_transparency_is_shown_over_white(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    save(image, tmp_path / "clear.gif", transparency=0)
    assert np.asarray(load_rgb(tmp_path / "clear.gif")).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    save(image, tmp_path / "phone.jpg", exif=exif)
    assert load_rgb(tmp_path / "phone.jpg").size == (10, 20)


def test_large_jpeg_is_decoded_at_reduced_scale_never_below_min_side(tmp_path):
    save(Image.new("RGB", (1600, 1200), "red"), tmp_path / "big.jpg")
    assert load_rgb(tmp_path / "big.jpg").size == (1600, 1200)
    assert load_rgb(tmp_path / "big.jpg", min_side=146).size == (200, 150)  # 1/8 scale
    assert load_rgb(tmp_path / "big.jpg", min_side=400).size == (800, 600)  # 1/4 is too small


def test_non_image_files_are_named_in_one_line(tmp_path, caplog):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 3)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "dog" / "._2.png").write_bytes(b"\0\5\26\7 AppleDouble")
    Image.new("RGB", (8, 8)).save(tmp_path / "dog" / "frame.gif")
    write_images(tmp_path / ".ipynb_checkpoints", 2)  # never a class
    write_images(tmp_path, 1)  # an image outside every class folder
    with caplog.at_level(logging.INFO, logger="train.data"):
        splits, spec = image_folder(tmp_path)
    assert spec.class_names == ("cat", "dog")
    assert sum(split_sizes(splits).values()) == 7  # the GIF counts, the others do not
    (line,) = [record.message for record in caplog.records if "not class images" in record.message]
    assert line.startswith("ignored 5 file(s) or folder(s) that are not class images:")
    for name in ("cat/notes.txt", "cat/.DS_Store", "dog/._2.png", ".ipynb_checkpoints", "0.png"):
        assert name in line


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buffer, "JPEG"
    )
    return buffer.getvalue()[:-300]


def test_truncated_image_is_caught_before_training(tmp_path, caplog):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 4)
    (tmp_path / "cat" / "cut.jpg").write_bytes(truncated_jpeg())
    Image.open(tmp_path / "cat" / "cut.jpg").verify()  # the header alone looks fine
    with pytest.raises(UserError, match=r"1 unreadable image\(s\) in .*cat/cut.jpg"):
        image_folder(tmp_path)
    with caplog.at_level(logging.INFO, logger="train.data"):
        splits, _ = image_folder(tmp_path, "--skip-bad-images")
    assert sum(split_sizes(splits).values()) == 8
    assert "skipped 1 unreadable image(s): cat/cut.jpg" in caplog.text


def checked_counts(caplog) -> list[str]:
    return [
        record.message.split(" in ")[0] for record in caplog.records if "checked" in record.message
    ]


def test_check_is_cached_until_a_file_changes(tmp_path, caplog):
    for name in ("cat", "dog"):
        write_images(tmp_path / "data" / name, 4)
    with caplog.at_level(logging.INFO, logger="train.data"):
        image_folder(tmp_path / "data")
        image_folder(tmp_path / "data")  # nothing changed: nothing to check
        (tmp_path / "data" / "dog" / "1.png").write_bytes(truncated_jpeg())
        with pytest.raises(UserError, match="dog/1.png"):
            image_folder(tmp_path / "data")
        with pytest.raises(UserError, match="dog/1.png"):
            image_folder(tmp_path / "data")  # a cached verdict is still a verdict
    assert checked_counts(caplog) == ["checked 8 image(s)", "checked 1 image(s)"]


def break_after_check(tmp_path, *flags: str):
    for name in ("cat", "dog"):
        write_images(tmp_path / "data" / name, 4)
    splits, _ = image_folder(tmp_path / "data", *flags)
    (tmp_path / "data" / "cat" / "0.png").write_bytes(b"gone")
    return torch.utils.data.DataLoader(splits["train"], batch_size=8, num_workers=2)


def test_file_broken_during_training_stops_with_one_line(tmp_path, capsys):
    loader = break_after_check(tmp_path)
    assert run_reporting_user_errors(lambda: list(loader)) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: image ") and "cat/0.png became unreadable" in error
    assert len(error.splitlines()) == 1 and "Traceback" not in error


@pytest.mark.slow
def test_file_broken_during_training_is_skipped_when_asked(tmp_path):
    loader = break_after_check(tmp_path, "--skip-bad-images")
    (images, labels) = next(iter(loader))
    assert images.shape[0] == len(labels) == 6  # 0.png replaced by the next readable image


def disc_image(side: int, aspect: float = 1.0) -> Image.Image:
    """A white disc, a quarter of the shorter side across, centred on black."""
    width, height = round(side * aspect), side
    y, x = np.mgrid[:height, :width]
    radius = side / 8
    inside = (x - width / 2 + 0.5) ** 2 + (y - height / 2 + 0.5) ** 2 <= radius**2
    return Image.fromarray((inside * 255).astype(np.uint8)).convert("RGB")


def disc_width(image: torch.Tensor) -> float:
    """The disc's diameter in output pixels (from its area), or nan when it is cut off."""
    bright = image[0] > 0.5
    if bright[0].any() or bright[-1].any() or bright[:, 0].any() or bright[:, -1].any():
        return float("nan")
    return 2 * math.sqrt(float(bright.sum()) / math.pi)


@pytest.mark.parametrize("side", [32, 64, 160])  # smaller than, equal to, larger than 64
@pytest.mark.parametrize("aspect", [1.0, 4 / 3])
def test_train_and_eval_see_objects_at_the_same_scale(side, aspect):
    train_tf, eval_tf = photo_transforms(64, round(64 / 0.875), (0.0,) * 3, (1.0,) * 3)
    image = disc_image(side, aspect)
    eval_width = disc_width(eval_tf(image))
    torch.manual_seed(0)
    train_widths = [disc_width(train_tf(image)) for _ in range(400)]
    visible = [width for width in train_widths if width == width]
    assert eval_tf(image).shape == (3, 64, 64)
    assert eval_width == pytest.approx(64 / 0.875 / 4, abs=1.5)
    assert np.median(visible) == pytest.approx(eval_width, rel=0.15)


def test_hidden_folders_are_skipped_at_every_depth(tmp_path, caplog):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 3, size=(8, 8))
    write_images(tmp_path / "cat" / ".ipynb_checkpoints", 2, size=(8, 8))
    write_images(tmp_path / "dog" / "2024" / "__MACOSX", 1, size=(8, 8))
    write_images(tmp_path / "dog" / "2024" / ".cache" / "thumbs", 4, size=(8, 8))
    write_images(tmp_path / "dog" / "2024", 1, size=(8, 8))  # a real subfolder is read
    with caplog.at_level(logging.INFO, logger="train.data"):
        splits, _ = image_folder(tmp_path)
    samples = splits["train"].samples + splits["val"].samples
    assert len(samples) == 7
    folders = {name for path, _ in samples for name in path.relative_to(tmp_path).parts[:-1]}
    assert folders == {"cat", "dog", "2024"}
    (line,) = [record.message for record in caplog.records if "not class images" in record.message]
    for name in ("cat/.ipynb_checkpoints", "dog/2024/.cache", "dog/2024/__MACOSX"):
        assert name in line


def test_a_class_left_without_training_images_is_refused(tmp_path):
    write_images(tmp_path / "a", 2, size=(8, 8))
    write_images(tmp_path / "b", 8, size=(8, 8))
    with pytest.raises(UserError, match="class a would have no training images: --val-fraction"):
        image_folder(tmp_path, "--val-fraction", "0.75")
    splits, _ = image_folder(tmp_path, "--val-fraction", "0.5")
    assert sorted(label for _, label in splits["train"].samples) == [0, 1, 1, 1, 1]


@pytest.mark.parametrize("folders", [("a", "b"), ("train/a", "train/b", "val/a", "val/b")])
def test_a_class_whose_images_were_all_skipped_is_refused(tmp_path, folders):
    for folder in folders:
        write_images(tmp_path / folder, 3, size=(8, 8))
    for path in (tmp_path / folders[-1]).iterdir():
        path.write_bytes(b"not an image")
    with pytest.raises(UserError, match="class b has no readable image left in"):
        image_folder(tmp_path, "--skip-bad-images")


def test_class_names_match_in_any_unicode_form(tmp_path):
    composed, decomposed = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    for split, name in (("train", composed), ("val", decomposed)):
        for class_name in (name, "thé"):
            write_images(tmp_path / split / class_name, 2, size=(8, 8))
    splits, spec = image_folder(tmp_path)
    assert spec.class_names == (composed, "thé")
    assert [label for _, label in splits["val"].samples] == [0, 0, 1, 1]
    assert {path.parent.name for path, _ in splits["val"].samples} == {decomposed, "thé"}
    write_images(tmp_path / "train" / decomposed, 1, size=(8, 8))
    with pytest.raises(UserError, match="two class folders named café, written in two Unicode"):
        image_folder(tmp_path)


def test_a_recorded_split_is_kept_whatever_files_come_and_go(tmp_path, caplog):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 10, size=(8, 8))
    config = parse_config(["--dataset", "image_folder", "--data-dir", str(tmp_path)]).data
    splits, spec = build_datasets(config)
    record = dataset_info("image_folder").split_record(config, splits, spec, None)
    assert list(record["val"].values()) == ["cat", "cat", "dog", "dog"]
    assert len(record["train"]) == 16 and not set(record["train"]) & set(record["val"])
    removed = splits["train"].samples[0][0]
    removed.unlink()
    for name in ("cat", "dog"):
        write_images(tmp_path / name / "more", 1, size=(8, 8))
    with caplog.at_level(logging.INFO, logger="train.data"):
        again, _ = build_datasets(config, recorded_split=record)
    assert again["val"].samples == splits["val"].samples
    assert again["train"].samples == splits["train"].samples[1:]
    (line,) = [entry.message for entry in caplog.records if "split was recorded" in entry.message]
    assert "2 image(s) added (not used by this run" in line and "1 removed (dropped)" in line
    assert (
        dataset_info("image_folder").split_record(config, again, spec, record) is record
    )  # kept as first recorded


@pytest.mark.parametrize(
    "change, message",
    [
        ("delete cat's training images", "class cat has no training image left of this run's"),
        ("rename dog to wolf", "class folder wolf in .* is not in this run's recorded split"),
    ],
)
def test_a_recorded_split_refuses_a_class_it_cannot_train(tmp_path, change, message):
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 3, size=(8, 8))
    config = parse_config(["--dataset", "image_folder", "--data-dir", str(tmp_path)]).data
    splits, spec = build_datasets(config)
    record = dataset_info("image_folder").split_record(config, splits, spec, None)
    if change == "rename dog to wolf":
        (tmp_path / "dog").rename(tmp_path / "wolf")
    else:
        for path in [path for path, label in splits["train"].samples if label == 0]:
            path.unlink()
    with pytest.raises(UserError, match=message):
        build_datasets(config, recorded_split=record)


def test_a_recorded_split_applies_to_its_own_data_folder_only(tmp_path):
    state = {"config": {"data_dir": str(tmp_path / "photos")}, "split": {"train": {}, "val": {}}}
    flags = ["--dataset", "image_folder", "--data-dir"]
    same = parse_config([*flags, str(tmp_path / "other" / ".." / "photos")]).data
    other = parse_config([*flags, str(tmp_path / "other")]).data
    assert recorded_split(state, same) is state["split"]
    assert recorded_split(state, other) is None  # e.g. a run resumed on new data: carved anew
    assert recorded_split({"config": state["config"]}, same) is None  # written before records


def test_split_folders_need_no_record(tmp_path):
    for split, name in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "dog")):
        write_images(tmp_path / split / name, 2, size=(8, 8))
    config = parse_config(["--dataset", "image_folder", "--data-dir", str(tmp_path)]).data
    splits, spec = build_datasets(config)
    assert dataset_info("image_folder").split_record(config, splits, spec, None) is None


@pytest.mark.slow  # trains: once, in the complete suite
def test_resume_and_evaluate_keep_the_recorded_split(train, tmp_path):
    photos = tmp_path / "photos"
    for name in ("cat", "dog"):
        write_images(photos / name, 6, size=(8, 8))
    data = ("--dataset", "image_folder", "--data-dir", str(photos), "--batch-size", "4")
    run_dir = train(*data, "--epochs", "2", "--stop-after-epochs", "1")
    record = json.loads((run_dir / "split.json").read_text())
    assert torch.load(run_dir / "last.pt", weights_only=True)["split"] == record
    (val_loss,) = [json.loads(line)["val_loss"] for line in open(run_dir / "metrics.jsonl")]
    for name in ("cat", "dog"):  # the data changes after the run started
        write_images(photos / name / "more", 1, size=(8, 8))

    assert evaluate_main(["--checkpoint", str(run_dir / "last.pt")]) == 0
    report = json.loads((run_dir / "eval_val_last.json").read_text())
    assert report["images"] == len(record["val"])
    assert report["val_loss"] == pytest.approx(val_loss, rel=1e-5)  # the very same images

    train(*data, "--epochs", "2", "--resume", "auto")
    assert "2 image(s) added" in (run_dir / "train.log").read_text()
    assert torch.load(run_dir / "last.pt", weights_only=True)["split"] == record


@pytest.mark.slow  # trains: once, in the complete suite
def test_a_checkpoint_without_a_recorded_split_still_resumes_and_evaluates(train, tmp_path):
    for name in ("cat", "dog"):
        write_images(tmp_path / "photos" / name, 6, size=(8, 8))
    data = ("--dataset", "image_folder", "--data-dir", str(tmp_path / "photos"))
    run_dir = train(*data, "--batch-size", "4", "--epochs", "2", "--stop-after-epochs", "1")
    record = json.loads((run_dir / "split.json").read_text())
    for name in ("last.pt", "best.pt"):  # as written before splits were recorded
        state = torch.load(run_dir / name, weights_only=True)
        del state["split"]
        torch.save(state, run_dir / name)
    (run_dir / "split.json").unlink()
    assert evaluate_main(["--checkpoint", str(run_dir / "last.pt")]) == 0
    train(*data, "--batch-size", "4", "--epochs", "2", "--resume", "auto")
    assert json.loads((run_dir / "split.json").read_text()) == record  # carved again by the seed


def test_resume_on_a_folder_with_a_class_renamed_is_refused(train, tmp_path):
    """Same class count, other names: resuming would hand the model's outputs to other classes
    (the renamed one sorts first here); only the folder the split was recorded on checks it."""
    for name in ("cat", "dog"):
        write_images(tmp_path / "photos" / name, 4, size=(8, 8))
    photos = ("--dataset", "image_folder", "--data-dir", str(tmp_path / "photos"))
    run_dir = train(*photos, "--batch-size", "4")
    shutil.copytree(tmp_path / "photos", tmp_path / "copy")
    (tmp_path / "copy" / "dog").rename(tmp_path / "copy" / "bear")
    data = ["--dataset", "image_folder", "--data-dir", str(tmp_path / "copy"), "--image-size"]
    config = parse_config([*data, "8", "--warmup-epochs", "0"])
    refused = r"trained on the classes cat, dog, but .* \(missing dog; extra bear\)"
    with pytest.raises(UserError, match=refused):
        load_resumable(run_dir / "last.pt", config)


def test_resume_with_another_seed_or_validation_share_is_refused(train, tmp_path):
    """They carved the recorded split: a resume under others would keep that split while its
    config.yaml said otherwise (and re-carve it on digits, making training images val ones)."""
    for name in ("cat", "dog"):
        write_images(tmp_path / "photos" / name, 4, size=(8, 8))
    photos = ["--dataset", "image_folder", "--data-dir", str(tmp_path / "photos")]
    run_dir = train(*photos, "--batch-size", "4")
    for flag, value, trained_with in (("--seed", "7", "0"), ("--val-fraction", "0.5", "0.2")):
        config = parse_config([*photos, "--image-size", "8", "--warmup-epochs", "0", flag, value])
        refused = f"was trained with {flag} {trained_with}: resume with the same flags"
        with pytest.raises(UserError, match=refused):
            load_resumable(run_dir / "last.pt", config)
