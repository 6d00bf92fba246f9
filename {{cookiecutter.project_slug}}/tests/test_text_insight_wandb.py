"""A text run's end-of-run embeddings and mistakes in an offline wandb run, read back from its
files."""

import csv
import json

import pytest

EMBEDDED, MISTAKES, FEATURES = 20, 8, 64  # --embeddings, --mistakes, bag_of_embeddings' width


def logged_table(offline_run, key: str) -> dict:
    (table_file,) = offline_run.glob(f"files/media/table/{key}_*.table.json")
    return json.loads(table_file.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_wandb_run_holds_the_texts_embedding_table_and_the_mistakes_table(
    train, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # staged artifacts
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    run_dir = train("--embeddings", str(EMBEDDED), "--mistakes", str(MISTAKES))
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")

    embeddings = logged_table(offline_run, "val/embeddings")
    assert embeddings["columns"] == ["index", "text", "label", "prediction", "features"]
    metadata = (run_dir / "embeddings" / "metadata.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in metadata.splitlines()[1:]]
    assert [row[:4] for row in embeddings["data"]] == rows and len(rows) == EMBEDDED
    assert all(len(row[4]) == FEATURES for row in embeddings["data"])
    assert not list(offline_run.glob("files/media/images/**/*.png"))  # no thumbnails

    mistakes = logged_table(offline_run, "val/mistakes")
    assert mistakes["columns"] == ["text", "true", "predicted", "confidence"]
    with open(run_dir / "mistakes.csv", newline="", encoding="utf-8") as file:
        header, *written = list(csv.reader(file))
    assert header == mistakes["columns"] and len(written) == MISTAKES
    assert [[*row[:3], str(row[3])] for row in mistakes["data"]] == written
    assert all(row[1] != row[2] for row in mistakes["data"])
