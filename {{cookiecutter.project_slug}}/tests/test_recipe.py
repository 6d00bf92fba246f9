"""--compile, --ema and --channels-last: each changes how a run computes, never what it keeps."""

import pytest
import torch

from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main
from {{ cookiecutter.project_slug }}.models import build_model
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
from {{ cookiecutter.project_slug }}.train import main as train_main
from {{ cookiecutter.project_slug }}.training.ema import ExponentialMovingAverage, warmed_up_decay

from conftest import QUICK, load_weights, read_metrics

# The smallest model compiles fastest (tens of seconds on a CPU; later runs hit the cache).
COMPILED = ("--model", "mlp", "--compile")


def saved_spec(checkpoint):
    return DataSpec.from_dict(load_checkpoint(checkpoint)["data_spec"])


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18"])
def test_channels_last_gives_the_outputs_of_nchw(name):
    spec = DataSpec(tuple("abc"), 3, 32, (0.5,) * 3, (0.5,) * 3, 32)
    torch.manual_seed(0)
    model = build_model(name, spec).eval()
    channels_last = build_model(name, spec).eval()
    channels_last.load_state_dict(model.state_dict())
    channels_last.to(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
        actual = channels_last(images.to(memory_format=torch.channels_last))
    assert channels_last.state_dict()[next(iter(model.state_dict()))].is_contiguous(
        memory_format=torch.channels_last
    )
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_channels_last_run_saves_weights_that_load_anywhere(train):
    run_dir = train("--channels-last")
    assert "channels_last: true" in (run_dir / "config.yaml").read_text()
    fresh = build_model("simple_cnn", saved_spec(run_dir / "last.pt"))
    fresh.load_state_dict(load_weights(run_dir / "last.pt"))


def test_ema_decay_warms_up_then_holds():
    assert warmed_up_decay(0.999, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.999, 90) == pytest.approx(0.91)
    assert warmed_up_decay(0.999, 100_000) == 0.999


def test_ema_follows_the_weights_with_the_warmed_up_decay():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = ExponentialMovingAverage(model, decay=0.5)
    expected = None
    for update, value in enumerate([1.0, 2.0, 4.0, 8.0]):
        model[0].weight.data.fill_(value)
        ema.update_parameters(model)
        if expected is None:
            expected = value  # the first update copies the weights
        else:
            decay = warmed_up_decay(0.5, update)
            expected = decay * expected + (1 - decay) * value
    assert ema.module[0].weight.item() == pytest.approx(expected)
    assert int(ema.n_averaged) == 4
    assert ema.module[1].num_batches_tracked.dtype == torch.long  # copied, not averaged


@pytest.mark.slow
def test_ema_is_evaluated_checkpointed_and_selects_best(train, capsys):
    run_dir = train("--ema", "0.9", "--epochs", "3")
    records = read_metrics(run_dir)
    assert all({"ema_val_acc", "ema_val_loss", "val_acc"} <= record.keys() for record in records)
    best = load_checkpoint(run_dir / "best.pt")
    scores = [record["ema_val_acc"] for record in records]
    assert best["epoch"] == scores.index(max(scores)) + 1  # first epoch with the best EMA score
    assert best["best_metric"] == max(scores)
    assert f"best ema_val_acc {max(scores):.4f}" in capsys.readouterr().err
    last = load_checkpoint(run_dir / "last.pt")
    assert last["ema"]["updates"] == last["global_step"]
    assert any(
        not torch.equal(last["ema"]["weights"][key], last["model"][key]) for key in last["model"]
    )
    assert evaluate_main(["--checkpoint", str(run_dir / "last.pt")]) == 0
    out = capsys.readouterr().out
    assert "ema weights" in out and f"top-1 {records[-1]['ema_val_acc']:.4f}" in out


@pytest.mark.slow
def test_ema_resumes_exactly_mid_epoch(tmp_path):
    flags = [*QUICK, "--epochs", "2", "--deterministic", "--ema", "0.9", "--channels-last"]
    flags += ["--output-dir", str(tmp_path)]
    assert train_main([*flags, "--name", "straight"]) == 0
    assert train_main([*flags, "--name", "cut", "--max-minutes", "1e-9"]) == 75
    assert train_main([*flags, "--name", "cut", "--resume", "auto"]) == 0
    expected = load_checkpoint(tmp_path / "straight" / "last.pt")["ema"]
    actual = load_checkpoint(tmp_path / "cut" / "last.pt")["ema"]
    assert actual["updates"] == expected["updates"]
    for key, value in expected["weights"].items():
        assert torch.equal(actual["weights"][key], value), key


@pytest.mark.slow
def test_resume_with_another_ema_is_refused(train, tmp_path, capsys):
    train("--epochs", "2", "--stop-after-epochs", "1")
    flags = [*QUICK, "--epochs", "2", "--output-dir", str(tmp_path), "--name", "run"]
    before = (tmp_path / "run" / "last.pt").read_bytes()
    assert train_main([*flags, "--resume", "auto", "--ema", "0.99"]) == 2
    assert "was trained with --ema 0.0" in capsys.readouterr().err
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


@pytest.mark.slow
def test_compiled_checkpoints_resume_and_evaluate_with_or_without_compile(train, capsys):
    compiled = train(*COMPILED, "--epochs", "3", "--stop-after-epochs", "1", name="compiled")
    weights = load_weights(compiled / "last.pt")
    plain = build_model("mlp", saved_spec(compiled / "last.pt"))
    assert weights.keys() == plain.state_dict().keys()  # no _orig_mod. prefix
    uncompiled = ("--model", "mlp", "--epochs", "3", "--stop-after-epochs", "1")
    train(*uncompiled, "--resume", "auto", name="compiled")
    assert load_checkpoint(compiled / "last.pt")["epoch"] == 2
    train(*COMPILED, "--epochs", "3", "--resume", "auto", name="compiled")
    assert [record["epoch"] for record in read_metrics(compiled)] == [1, 2, 3]
    assert evaluate_main(["--checkpoint", str(compiled / "best.pt")]) == 0
    assert "top-1" in capsys.readouterr().out


@pytest.mark.gpu
def test_compiled_channels_last_ema_run_resumes_on_cuda(train):
    flags = ("--device", "cuda", "--compile", "--channels-last", "--ema", "0.99", "--epochs", "2")
    run_dir = train(*flags, "--stop-after-epochs", "1")
    train(*flags, "--resume", "auto")
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1, 2]
    last = load_checkpoint(run_dir / "last.pt")
    assert last["ema"]["updates"] == last["global_step"]
