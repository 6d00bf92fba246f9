import json

import pytest
from PIL import Image

from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main


@pytest.fixture(autouse=True)
def private_check_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def write_class_images(root, classes, count: int) -> None:
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for index in range(count):
            color = (200 * label, 40 + index, 100)
            Image.new("RGB", (20, 16), color).save(root / name / f"{index}.jpg")


# Each test trains a small run first, so they are marked slow (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow


@pytest.fixture
def photo_run(train, tmp_path):
    """A run trained on root/train (40 images) + root/test (6); val carved from train."""
    write_class_images(tmp_path / "photos" / "train", ("cat", "dog"), 20)
    write_class_images(tmp_path / "photos" / "test", ("cat", "dog"), 3)
    flags = ("--dataset", "image_folder", "--data-dir", str(tmp_path / "photos"))
    return train(*flags, "--image-size", "16", "--batch-size", "8", "--val-fraction", "0.2")


def evaluated(capsys, checkpoint, *flags: str) -> dict:
    output = checkpoint.parent / "report.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--output", str(output), *flags]) == 0
    capsys.readouterr()
    return json.loads(output.read_text())


@pytest.mark.parametrize("split, images", [(None, 8), ("val", 8), ("test", 6), ("all", 46)])
def test_evaluate_scores_the_split_asked_for(photo_run, capsys, tmp_path, split, images):
    flags = [] if split is None else ["--split", split]
    report = evaluated(capsys, photo_run / "best.pt", *flags)
    assert report["split"] == (split or "val") and report["images"] == images
    assert report["data_dir"] == str(tmp_path / "photos")
    assert report["classes"] == ["cat", "dog"]
    assert sum(map(sum, report["confusion_matrix"])) == images


def test_a_folder_without_splits_is_scored_whole(photo_run, capsys, tmp_path):
    write_class_images(tmp_path / "new", ("cat", "dog"), 7)
    report = evaluated(capsys, photo_run / "best.pt", "--data-dir", str(tmp_path / "new"))
    assert (report["split"], report["images"]) == ("all", 14)


def test_other_classes_are_named(photo_run, capsys, tmp_path):
    write_class_images(tmp_path / "other", ("cat", "fox"), 3)
    flags = ["--checkpoint", str(photo_run / "best.pt"), "--data-dir", str(tmp_path / "other")]
    assert evaluate_main(flags) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "missing dog; extra fox" in error


def test_a_split_the_data_lacks_is_refused(train, capsys):
    run_dir = train()
    assert evaluate_main(["--checkpoint", str(run_dir / "best.pt"), "--split", "test"]) == 2
    assert "has no test split" in capsys.readouterr().err


def test_best_and_last_keep_their_own_reports(train, capsys):
    run_dir = train()
    for name in ("best.pt", "last.pt"):
        assert evaluate_main(["--checkpoint", str(run_dir / name)]) == 0
    for report, checkpoint in (("eval_val.json", "best.pt"), ("eval_val_last.json", "last.pt")):
        assert json.loads((run_dir / report).read_text())["checkpoint"] == str(run_dir / checkpoint)


def test_classes_without_images_are_reported_as_such_never_as_zero(train, capsys):
    run_dir = train("--fake-samples", "40", "--val-fraction", "0.01")  # one image, ten classes
    output = run_dir / "report.json"
    assert evaluate_main(["--checkpoint", str(run_dir / "best.pt"), "--output", str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    report = json.loads(output.read_text())
    assert [accuracy is None for accuracy in report["per_class_acc"]].count(True) == 9
    for name, accuracy, row in zip(
        report["classes"], report["per_class_acc"], report["confusion_matrix"], strict=True
    ):
        if accuracy is None:
            assert f"{name:<16} no images" in printed and sum(row) == 0
    assert sum(line.endswith("(no images)") for line in printed) == 9
