"""The end-of-run embeddings and mistakes in an offline wandb run, read back from its files."""

import json
import re

import pytest

from offline_wandb import wandb_records

EMBEDDED, MISTAKES, FEATURES = 10, 4, 128  # --embeddings, --mistakes, simple_cnn's features
CAPTION = re.compile(r"true (\S+), predicted (\S+) \((\d\.\d\d)\)")


def history_items(records) -> dict:
    """Every history value the run logged, by key (nested keys joined with "/")."""
    values = {}
    for record in records:
        if record.HasField("history"):
            for item in record.history.item:
                values[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return values


@pytest.mark.slow
def test_wandb_run_holds_the_embedding_table_and_the_mistakes(train, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # staged artifacts
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    run_dir = train("--embeddings", str(EMBEDDED), "--mistakes", str(MISTAKES))
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    (table_file,) = offline_run.glob("files/media/table/val/embeddings_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["index", "label", "prediction", "image", "features"]
    metadata = (run_dir / "embeddings" / "metadata.tsv").read_text().splitlines()[1:]
    assert [row[:3] for row in table["data"]] == [line.split("\t") for line in metadata]
    assert all(len(row[4]) == FEATURES for row in table["data"])

    records = list(wandb_records(next(offline_run.glob("run-*.wandb"))))
    artifacts = [record.artifact for record in records if record.HasField("artifact")]
    (table_artifact,) = [artifact for artifact in artifacts if artifact.type == "run_table"]
    images = [entry for entry in table_artifact.manifest.contents if entry.path.endswith(".png")]
    assert len(images) == EMBEDDED  # one thumbnail per row

    logged = history_items(records)
    assert logged["val/embeddings/nrows"] == EMBEDDED
    assert logged["val/mistakes/count"] == MISTAKES
    for filename in logged["val/mistakes/filenames"]:
        assert (offline_run / "files" / filename).stat().st_size > 0
    captions = [CAPTION.fullmatch(caption) for caption in logged["val/mistakes/captions"]]
    assert all(caption and caption[1] != caption[2] for caption in captions)
    probabilities = [float(caption[3]) for caption in captions]
    assert probabilities == sorted(probabilities, reverse=True)
