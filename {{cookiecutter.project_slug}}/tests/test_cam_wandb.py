"""--cam-every in wandb: each due epoch's Grad-CAM images, captioned with their labels."""

import json
import re
from pathlib import Path

import pytest

from conftest import read_metrics
from offline_wandb import wandb_records


def history_rows(path: Path) -> list[dict]:
    """Each logged step's values; an image list's fields under "<key>/<field>"."""
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in record.history.item
        }
        for record in wandb_records(path)
        if record.HasField("history")
    ]


@pytest.mark.slow
def test_offline_run_holds_the_images_with_their_labels(train, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # staged artifacts
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    run_dir = train("--epochs", "2", "--cam-every", "1")
    (log_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    rows = [row for row in history_rows(log_file) if "cam/val/captions" in row]
    assert [row["_step"] for row in rows] == [record["step"] for record in read_metrics(run_dir)]
    true_labels = []
    for row in rows:
        captions = row["cam/val/captions"]
        assert row["cam/val/_type"] == "images/separated"
        assert row["cam/val/count"] == len(captions) == len(row["cam/val/filenames"]) > 0
        assert all(re.fullmatch(r"true \S+, predicted \S+", caption) for caption in captions)
        files = [log_file.parent / "files" / name for name in row["cam/val/filenames"]]
        assert all(path.is_file() for path in files)
        true_labels.append([caption.split(",")[0] for caption in captions])
    assert true_labels[0] == true_labels[1]  # the same images in every epoch
