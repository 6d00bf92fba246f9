import pytest
import torch

from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
from {{ cookiecutter.project_slug }}.train import main as train_main

from conftest import QUICK, load_weights, read_metrics

TIMINGS = {"samples_per_second", "epoch_seconds"}


def without_timings(records: list[dict]) -> list[dict]:
    return [
        {key: value for key, value in record.items() if key not in TIMINGS} for record in records
    ]


def test_smoke_train_on_digits_writes_the_run_folder(train):
    run_dir = train("--dataset", "digits", "--batch-size", "64", "--image-size", "8")
    for name in ("config.yaml", "train.log", "metrics.jsonl", "last.pt", "best.pt"):
        assert (run_dir / name).stat().st_size > 0, name
    (record,) = read_metrics(run_dir)
    assert {"epoch", "train_loss", "val_loss", "val_acc", "lr"} <= record.keys()
    assert record["val_acc"] > 0.3  # one epoch on digits is far above chance (0.1)


def test_checkpoint_loads_with_weights_only(train):
    checkpoint = load_checkpoint(train() / "last.pt")
    assert checkpoint["epoch"] == 1
    assert not any(key.startswith("module.") for key in checkpoint["model"])
    assert {"optimizer", "scheduler", "rng", "early_stopping", "config"} <= checkpoint.keys()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_resume_matches_an_uninterrupted_run(train, device):
    flags = ("--device", device, "--deterministic", "--seed", "3")
    straight = train(*flags, "--epochs", "2", name="straight")
    train(*flags, "--epochs", "2", "--stop-after-epochs", "1", name="resumed")
    resumed = train(*flags, "--epochs", "2", "--resume", "auto", name="resumed")
    expected, actual = load_weights(straight / "last.pt"), load_weights(resumed / "last.pt")
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert without_timings(read_metrics(straight)) == without_timings(read_metrics(resumed))


def test_evaluate_reports_the_checkpoint(train, capsys):
    run_dir = train()
    assert evaluate_main(["--checkpoint", str(run_dir / "best.pt")]) == 0
    assert "confusion matrix" in capsys.readouterr().out
    assert (run_dir / "eval_val.json").exists()


@pytest.mark.slow
def test_time_budget_stops_mid_epoch_and_resume_is_exact(tmp_path):
    flags = [*QUICK, "--epochs", "2", "--deterministic", "--output-dir", str(tmp_path)]
    assert train_main([*flags, "--name", "straight"]) == 0
    assert train_main([*flags, "--name", "cut", "--max-minutes", "1e-9"]) == 75
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["batches_done"] == 1
    assert train_main([*flags, "--name", "cut", "--resume", "auto"]) == 0
    expected, actual = (
        load_weights(tmp_path / "straight" / "last.pt"),
        load_weights(tmp_path / "cut" / "last.pt"),
    )
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
