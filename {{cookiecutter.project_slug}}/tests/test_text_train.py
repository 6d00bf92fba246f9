"""Text classifiers trained end to end: the default recipe and a table of the user's own learn,
every model trains, a run stopped mid-epoch resumes exactly, --monitor val_f1 picks best.pt, and
evaluate and predict report on texts."""

import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main
from {{ cookiecutter.project_slug }}.models import build_model
from {{ cookiecutter.project_slug }}.predict import main as predict_main
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
from {{ cookiecutter.project_slug }}.train import main as train_main

from conftest import QUICK, language_rows, load_weights, predicted, read_metrics, write_table

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "languages.yaml"
TIMINGS = {"samples_per_second", "epoch_seconds"}
LANGUAGES = ("de", "en")
{%- if cookiecutter.insight == "yes" %}
QUIET = ["--no-progress", "--embeddings", "0", "--mistakes", "0"]
{%- else %}
QUIET = ["--no-progress"]
{%- endif %}


def without_timings(records: list[dict]) -> list[dict]:
    return [
        {key: value for key, value in record.items() if key not in TIMINGS} for record in records
    ]


def test_the_default_recipe_learns_the_languages(tmp_path):
    # configs/languages.yaml (the defaults) for 2 of its 15 epochs: 1 s on 2 idle CPU cores
    # (14 s while other jobs kept them busy).
    flags = ["--config", str(RECIPE), "--epochs", "2", *QUIET, "--output-dir", str(tmp_path)]
    assert train_main(flags) == 0
    (run_dir,) = tmp_path.iterdir()
    assert "tokenizer: bpe of 2000 subwords" in (run_dir / "train.log").read_text()
    assert read_metrics(run_dir)[-1]["val_acc"] > 0.6  # 9 languages: chance is 0.11


@pytest.mark.slow
def test_the_whole_default_recipe_reaches_75_percent(tmp_path):
    # All 15 epochs of configs/languages.yaml: 4 s on 2 idle CPU cores (95 s while other jobs
    # kept them busy); the best epoch reached 0.81.
    flags = ["--config", str(RECIPE), *QUIET, "--output-dir", str(tmp_path)]
    assert train_main(flags) == 0
    (run_dir,) = tmp_path.iterdir()
    assert max(record["val_acc"] for record in read_metrics(run_dir)) > 0.75


@pytest.fixture(scope="module")
def language_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, held-out table): a run on a CSV of Django's German and English messages,
    --monitor val_f1, and a table of every tenth message, which the run never saw."""
    root = tmp_path_factory.mktemp("languages")
    rows = language_rows(LANGUAGES)
    write_table(root / "messages.csv", [row for index, row in enumerate(rows) if index % 10])
    write_table(root / "held_out.csv", rows[::10])
    data = ["--dataset", "text_files", "--data-dir", str(root / "messages.csv")]
    flags = [*QUICK, *data, "--vocab-size", "500", "--epochs", "4", "--monitor", "val_f1"]
    assert train_main([*flags, "--output-dir", str(root), "--name", "run"]) == 0
    return root / "run", root / "held_out.csv"


def test_a_table_of_real_messages_learns(language_run):
    run_dir, _ = language_run
    best = max(read_metrics(run_dir), key=lambda record: record["val_f1"])
    assert best["val_acc"] > 0.8 and best["val_f1"] > 0.8  # two languages: chance is 0.5


def test_monitor_val_f1_selects_best_pt(language_run):
    run_dir, _ = language_run
    records = read_metrics(run_dir)
    best = max(records, key=lambda record: (record["val_f1"], -record["epoch"]))  # the first
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint["monitor"] == "val_f1" and checkpoint["epoch"] == best["epoch"]
    assert checkpoint["best_metric"] == pytest.approx(best["val_f1"])
    assert f"best val_f1 {best['val_f1']:.4f}" in (run_dir / "train.log").read_text()


def evaluated(capsys, *argv: str) -> str:
    """What evaluate printed."""
    capsys.readouterr()
    assert evaluate_main(list(argv)) == 0
    return capsys.readouterr().out


def test_evaluate_prints_macro_f1_and_each_class_precision_and_recall(language_run, capsys):
    run_dir, _ = language_run
    printed = evaluated(capsys, "--checkpoint", str(run_dir / "best.pt"))
    report = json.loads((run_dir / "eval_val.json").read_text())
    assert report["split"] == "val" and report["classes"] == list(LANGUAGES)
    confusion = torch.tensor(report["confusion_matrix"])
    assert report["texts"] == int(confusion.sum()) > 0
    diagonal = confusion.diagonal().double()
    expected_precision = (diagonal / confusion.sum(dim=0)).tolist()
    expected_recall = (diagonal / confusion.sum(dim=1)).tolist()
    assert report["per_class_precision"] == pytest.approx(expected_precision)
    assert report["per_class_recall"] == pytest.approx(expected_recall)
    best = load_checkpoint(run_dir / "best.pt")["best_metric"]
    assert report["val_f1"] == pytest.approx(best, abs=1e-5)  # what training measured
    assert f"macro-F1 {report['val_f1']:.4f}" in printed
    assert "class            precision  recall" in printed
    for name, precision, recall in zip(LANGUAGES, expected_precision, expected_recall, strict=True):
        assert f"{name:<16} {precision:>9.4f}  {recall:>9.4f}" in printed


def test_evaluate_scores_a_file_given_with_data_dir(language_run, capsys, tmp_path):
    run_dir, held_out = language_run
    output = tmp_path / "held_out.json"
    argv = ["--checkpoint", str(run_dir / "best.pt"), "--data-dir", str(held_out)]
    printed = evaluated(capsys, *argv, "--output", str(output))
    report = json.loads(output.read_text())
    assert (report["split"], report["data_dir"]) == ("all", str(held_out))
    assert report["texts"] == len(held_out.read_text(encoding="utf-8").splitlines()) - 1
    assert report["val_acc"] > 0.75 and f"report written to {output}" in printed


def test_predict_reads_arguments_files_and_stdin(language_run, capsys, tmp_path, monkeypatch):
    run_dir, _ = language_run
    rows = language_rows(LANGUAGES)[::10]  # held out: texts the run never saw
    listed = tmp_path / "texts.txt"
    listed.write_text("\n".join(" ".join(text.split()) for text, _ in rows) + "\n\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Speichern und weiter bearbeiten\n"))
    output = tmp_path / "predictions.csv"
    argv = ["Save and continue editing", str(listed), "-", "--top-k", "2", "--output", str(output)]
    assert predict_main([*argv, "--checkpoint", str(run_dir / "best.pt")]) == 0
    assert output.read_text().splitlines()[0] == "path,class,probability,top_k"
    predictions = predicted(output)
    names = [f"{listed}:{line}" for line in range(1, len(rows) + 1)]
    assert list(predictions) == ["Save and continue editing", *names, "stdin:1"]
    for by_class in predictions.values():
        assert set(by_class) == set(LANGUAGES)
        assert sum(by_class.values()) == pytest.approx(1, abs=1e-5)  # 6 decimals each
    top = {name: max(by_class, key=by_class.get) for name, by_class in predictions.items()}
    assert (top["Save and continue editing"], top["stdin:1"]) == ("en", "de")
    right = sum(top[name] == label for name, (_, label) in zip(names, rows, strict=True))
    assert right / len(rows) > 0.75  # as evaluate scores the held-out table


@pytest.mark.parametrize("model", ["bag_of_embeddings", "bigru", "transformer"])
def test_every_model_trains_an_epoch(train, small_data, model):
    run_dir = train(*small_data, "--model", model)
    (record,) = read_metrics(run_dir)
    assert math.isfinite(record["train_loss"]) and 0 <= record["val_acc"] <= 1
    spec = DataSpec.from_dict(load_checkpoint(run_dir / "last.pt")["data_spec"])
    build_model(model, spec).load_state_dict(load_weights(run_dir / "best.pt"))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_run_stopped_mid_epoch_resumes_exactly(tmp_path, small_data, device):
    """Worker processes load the batches of similar lengths; the resumed run continues the
    epoch's order where the stopped one left it."""
    flags = [*QUICK, *small_data, "--epochs", "2", "--deterministic", "--num-workers", "2"]
    flags += ["--device", device, "--output-dir", str(tmp_path)]
    assert train_main([*flags, "--name", "straight"]) == 0
    assert train_main([*flags, "--name", "cut", "--max-minutes", "1e-9"]) == 75
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["batches_done"] == 1
    assert train_main([*flags, "--name", "cut", "--resume", "auto"]) == 0
    expected = load_weights(tmp_path / "straight" / "last.pt")
    actual = load_weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    straight, cut = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "cut")
    assert without_timings(straight) == without_timings(cut)


@pytest.mark.parametrize(
    "model",
    ["bag_of_embeddings", pytest.param("bigru", marks=pytest.mark.slow), "transformer"],
)
def test_ema_accumulation_and_clipping_run_together(train, small_data, model):
    flags = [*small_data, "--model", model, "--ema", "0.9", "--accum-steps", "2"]
    flags += ["--clip-grad-norm", "0.5"]
{%- if cookiecutter.mixed_precision == "yes" %}
    run_dir = train(*flags, "--amp", "--device", "cpu")  # bfloat16 autocast
    assert "autocast bfloat16" in (run_dir / "train.log").read_text()
{%- else %}
    run_dir = train(*flags)
{%- endif %}
    (record,) = read_metrics(run_dir)
    samples = round(record["samples_per_second"] * record["epoch_seconds"])
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["global_step"] == math.ceil(math.ceil(samples / 32) / 2)
    assert "ema" in checkpoint
    assert math.isfinite(record["train_loss"]) and 0 <= record["ema_val_acc"] <= 1
