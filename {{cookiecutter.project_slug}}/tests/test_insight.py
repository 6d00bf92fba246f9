"""The end of a finished run: best.pt's embeddings and most confident mistakes on validation."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.project_slug }}.config.parser import saved_config
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.datasets import build_datasets
from {{ cookiecutter.project_slug }}.insight import finished_run as insight
from {{ cookiecutter.project_slug }}.insight.finished_run import TILE_SIDE, embedded_indices, gallery_cell
from {{ cookiecutter.project_slug }}.loggers.base import LOGGER_TYPES, RunLogger
from {{ cookiecutter.project_slug }}.loggers.pictures import MARGIN
from {{ cookiecutter.project_slug }}.models import build_model, model_info, model_names
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint, load_model_weights
from {{ cookiecutter.project_slug }}.tasks import build_task
from {{ cookiecutter.project_slug }}.train import main as train_main
from {{ cookiecutter.project_slug }}.training.validation import score

from conftest import INSIGHT, QUICK, load_weights, read_metrics

TIMINGS = {"samples_per_second", "epoch_seconds"}


@pytest.fixture
def recorded():
    """What the run's loggers receive: every logger built while the test runs is kept."""
    built = []

    class Recorder(RunLogger):
        def __init__(self, *args) -> None:
            self.embeddings, self.mistakes, self.grid = None, None, None
            built.append(self)

        def log_embeddings(self, embeddings, step):
            self.embeddings = embeddings

        def log_mistakes(self, mistakes, grid, step):
            self.mistakes, self.grid = mistakes, grid

    LOGGER_TYPES.append(Recorder)
    yield built
    LOGGER_TYPES.remove(Recorder)


def best_checkpoint_view(run_dir):
    """best.pt's model as evaluate loads it (the EMA's weights when kept), its validation
    split, and evaluate's class probabilities and targets for that split."""
    path = run_dir / "best.pt"
    checkpoint = load_checkpoint(path)
    config = saved_config(checkpoint["config"])
    splits, spec = build_datasets(config.data, augment=False)
    model = build_model(config.model.model, spec)
    load_model_weights(model, checkpoint, path, for_inference=True)
    loader = torch.utils.data.DataLoader(splits["val"], batch_size=64)
    cpu = torch.device("cpu")
    task = build_task("image_classification", config, spec, None, cpu)
    scores = score(model, loader, task, cpu, keep_predictions=True)
    return model.eval(), spec, scores["probabilities"], scores["targets"]


def taken_in_turn(labels: list[int], cap: int) -> list[int]:
    """Each class's first image, then each class's second, ...: the first `cap` taken."""
    queues = [[i for i, label in enumerate(labels) if label == c] for c in sorted(set(labels))]
    taken = []
    for turn in range(max(len(queue) for queue in queues)):
        taken += sorted(queue[turn] for queue in queues if turn < len(queue))
    return sorted(taken[:cap])


def read_tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_a_failing_insight_is_one_line_and_the_loggers_still_finish(train, recorded, monkeypatch):
    def broken(*args):
        raise RuntimeError("a model whose features cannot be read\nsecond line")

    monkeypatch.setattr(insight, "predict_split", broken)
    finished = []
    monkeypatch.setattr(RunLogger, "finish", lambda self, *args: finished.append(type(self)))
    run_dir = train(*INSIGHT)
    log_lines = (run_dir / "train.log").read_text().splitlines()
    errors = [line.split(" ERROR ", 1)[1] for line in log_lines if " ERROR " in line]
    assert errors == [
        "the end-of-run embeddings and mistakes failed (RuntimeError: a model whose features "
        "cannot be read): the run and its checkpoints are complete; pass --embeddings 0 "
        "--mistakes 0 to leave them out"
    ]
    assert recorded and all(type(logger) in finished for logger in recorded)
    assert (run_dir / "best.pt").exists()


def test_embedded_images_take_each_class_in_turn():
    labels = torch.tensor([2, 0, 0, 1, 0, 1, 2, 0])
    assert embedded_indices(labels, 5).tolist() == [0, 1, 2, 3, 5]
    assert embedded_indices(labels, 5).tolist() == taken_in_turn(labels.tolist(), 5)
    assert embedded_indices(labels, 100).tolist() == list(range(8))


@pytest.mark.parametrize("name", model_names())
def test_classifier_layer_maps_the_penultimate_features_to_the_logits(name):
    spec = DataSpec(tuple("abc"), 3, 8, (0.5,) * 3, (0.5,) * 3, 8)
    model = build_model(name, spec).eval()
    layer = model_info(name).embedding_layer(model)
    captured = []
    layer.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 8, 8))
        (features,) = captured
        assert features.shape[0] == 2 and layer.out_features == 3
        torch.testing.assert_close(layer(features), logits)


@pytest.mark.slow
def test_early_stopped_ema_run_shows_best_checkpoints_embeddings_and_mistakes(train, recorded):
    # val_acc cannot rise by more than 1: early stopping ends the run after epoch 2, and
    # best.pt (epoch 1) differs from the final weights.
    flags = ("--epochs", "3", "--patience", "1", "--min-delta", "1", "--ema", "0.5")
    run_dir = train(*flags, "--channels-last", "--embeddings", "10", "--mistakes", "5")
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1, 2]
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1
    model, spec, probabilities, targets = best_checkpoint_view(run_dir)
    confidences, predictions = probabilities.max(dim=1)
    names = spec.class_names
    (logger,) = recorded

    embeddings = logger.embeddings
    chosen = taken_in_turn(targets.tolist(), 10)
    assert embeddings.indices == chosen
    assert embeddings.labels == [names[targets[i]] for i in chosen]
    assert embeddings.predictions == [names[predictions[i]] for i in chosen]
    with torch.no_grad():  # the features are the classifier layer's input
        logits = model_info("simple_cnn").embedding_layer(model)(embeddings.features)
    torch.testing.assert_close(logits.softmax(dim=1), probabilities[chosen], atol=1e-4, rtol=0)
    assert embeddings.features.dtype == torch.float32
    features = np.loadtxt(run_dir / "embeddings" / "features.tsv", delimiter="\t")
    np.testing.assert_allclose(features, embeddings.features.numpy(), rtol=1e-5, atol=1e-6)
    metadata = read_tsv(run_dir / "embeddings" / "metadata.tsv")
    assert metadata == [["index", "label", "prediction"], *embeddings.metadata()]

    wrong = (predictions != targets).nonzero().flatten().tolist()
    mistakes = logger.mistakes
    assert len(mistakes) == min(5, len(wrong)) > 0
    for mistake in mistakes:
        assert mistake.index in wrong
        assert (mistake.label, mistake.prediction) == (
            names[targets[mistake.index]],
            names[predictions[mistake.index]],
        )
        assert mistake.probability == pytest.approx(float(confidences[mistake.index]), abs=1e-5)
    shown = [mistake.probability for mistake in mistakes]
    assert shown == sorted(shown, reverse=True)
    left_out = [float(confidences[i]) for i in wrong if i not in {m.index for m in mistakes}]
    assert max(left_out, default=0.0) <= shown[-1] + 1e-5

    grid = Image.open(run_dir / "mistakes.png")
    columns = math.ceil(math.sqrt(len(mistakes)))
    rows = math.ceil(len(mistakes) / columns)
    cell_width, cell_height = gallery_cell()
    assert grid.size == (columns * cell_width, rows * cell_height)
    pixels = np.asarray(grid.convert("L"))
    first_tile = pixels[MARGIN : MARGIN + TILE_SIDE, MARGIN : MARGIN + TILE_SIDE]
    first_caption = pixels[MARGIN + TILE_SIDE : cell_height, :cell_width]
    assert first_tile.std() > 0  # an image, not a blank
    assert first_caption.min() < 128 < first_caption.max()  # dark text on white
    assert np.array_equal(np.asarray(logger.grid), np.asarray(grid.convert("RGB")))


@pytest.mark.gpu
def test_a_resumed_compiled_channels_last_ema_run_on_cuda_shows_embeddings_and_mistakes(train):
    flags = ("--device", "cuda", "--compile", "--channels-last", "--ema", "0.99", "--epochs", "2")
    run_dir = train(*flags, "--stop-after-epochs", "1")
    train(*flags, "--resume", "auto", *INSIGHT)
    assert (run_dir / "embeddings" / "features.tsv").exists()
    assert (run_dir / "mistakes.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "exit_code"),
    [
        (["--embeddings", "0", "--mistakes", "0"], 0),
        (["--epochs", "2", "--stop-after-epochs", "1", *INSIGHT], 0),
        (["--max-minutes", "1e-9", *INSIGHT], 75),
    ],
    ids=["switched-off", "stop-after-epochs", "time-budget"],
)
def test_runs_that_opt_out_or_do_not_finish_show_nothing(tmp_path, recorded, flags, exit_code):
    run = [*QUICK, "--output-dir", str(tmp_path), "--name", "run", *flags]
    assert train_main(run) == exit_code
    assert (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / "embeddings").exists()
    assert not (tmp_path / "run" / "mistakes.png").exists()
    assert [(logger.embeddings, logger.mistakes) for logger in recorded] == [(None, None)]


@pytest.mark.slow
def test_looking_at_best_pt_leaves_the_training_results_alone(train):
    flags = ("--deterministic", "--seed", "5")
    looked = train(*flags, *INSIGHT, name="looked")
    plain = train(*flags, "--embeddings", "0", "--mistakes", "0", name="plain")
    assert (looked / "mistakes.png").exists() and not (plain / "mistakes.png").exists()
    for checkpoint in ("last.pt", "best.pt"):
        expected, actual = load_weights(plain / checkpoint), load_weights(looked / checkpoint)
        assert all(torch.equal(expected[key], actual[key]) for key in expected), checkpoint

    def without_timings(run_dir):
        return [
            {key: value for key, value in record.items() if key not in TIMINGS}
            for record in read_metrics(run_dir)
        ]

    assert without_timings(looked) == without_timings(plain)


@pytest.mark.slow
def test_a_one_image_validation_split_trains_and_shows_every_figure(train):
    """Every logger of this project with a split of one image: nine classes have none."""
    run_dir = train("--fake-samples", "40", "--val-fraction", "0.01", "--cam-every", "1", *INSIGHT)
    assert (run_dir / "last.pt").exists() and (run_dir / "best.pt").exists()
    (record,) = read_metrics(run_dir)
    assert sum(accuracy is not None for accuracy in record["per_class_acc"]) == 1
    assert (run_dir / "cam" / "epoch-001.png").exists()
    assert len((run_dir / "embeddings" / "metadata.tsv").read_text().splitlines()) == 2
