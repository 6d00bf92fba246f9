"""The end of a finished text run: best.pt's embedded validation texts and its most confident
mistakes, in the run folder (embeddings/, mistakes.csv) and as the loggers receive them."""

import csv

import pytest
import torch

from {{ cookiecutter.project_slug }}.config.parser import saved_config
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.datasets import build_datasets
from {{ cookiecutter.project_slug }}.loggers.base import LOGGER_TYPES, RunLogger
from {{ cookiecutter.project_slug }}.models import build_model, model_info, model_names
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint, load_model_weights
from {{ cookiecutter.project_slug }}.tasks import build_task
from {{ cookiecutter.project_slug }}.train import main as train_main
from {{ cookiecutter.project_slug }}.training.validation import score

from conftest import QUICK, language_rows, write_table

TEXT_MODELS = [name for name in model_names() if model_info(name).task == "text_classification"]
SPEC = DataSpec(("a", "b", "c"), vocab_size=50, max_length=16)


@pytest.fixture(scope="module")
def recorded():
    """What the run's loggers receive: every logger built while this module runs is kept."""
    built = []

    class Recorder(RunLogger):
        def __init__(self, *args) -> None:
            self.embeddings, self.mistakes, self.grid = None, None, "not logged"
            built.append(self)

        def log_embeddings(self, embeddings, step):
            self.embeddings = embeddings

        def log_mistakes(self, mistakes, grid, step):
            self.mistakes, self.grid = mistakes, grid

    LOGGER_TYPES.append(Recorder)
    yield built
    LOGGER_TYPES.remove(Recorder)


def tricky_rows(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Two validation texts labelled English: German messages (without placeholders) with a
    comma, quotes and a line break, which the model takes for German, and English messages
    joined by tabs and line breaks, far longer than a projector label."""
    german = [text for text, language in rows if language == "de" and "%" not in text]
    german = [text for text in german if len(text) > 40]  # sentences
    english = [text for text, language in rows if language == "en"]
    quoted = f'{german[0]}, "{german[1]}"\n' + " ".join(german[2:8])
    return [(quoted, "en"), ("\t\n".join(english[:8]), "en")]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, recorded):
    """(run folder, validation rows, the logger that recorded it): a run on train.csv and
    val.csv of Django's German and English messages, every tenth one and tricky_rows held out,
    with every validation text embedded and every mistake listed."""
    root = tmp_path_factory.mktemp("text-insight")
    rows = language_rows(("de", "en"))
    val = [*rows[::10], *tricky_rows(rows)]
    write_table(root / "data" / "train.csv", [row for index, row in enumerate(rows) if index % 10])
    write_table(root / "data" / "val.csv", val)
    data = ["--dataset", "text_files", "--data-dir", str(root / "data"), "--vocab-size", "500"]
    flags = [*QUICK, *data, "--epochs", "3", "--embeddings", "1000", "--mistakes", "1000"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        assert train_main([*flags, "--output-dir", str(root), "--name", "run"]) == 0
    (logger,) = recorded
    return root / "run", val, logger


def best_checkpoint_scores(run_dir):
    """evaluate's view of best.pt on the validation split: its class names, and each text's
    class probabilities and target."""
    path = run_dir / "best.pt"
    checkpoint = load_checkpoint(path)
    config = saved_config(checkpoint["config"])
    trained = DataSpec.from_dict(checkpoint["data_spec"])
    splits, spec = build_datasets(config.data, False, None, trained)
    model = build_model(config.model.model, spec)
    load_model_weights(model, checkpoint, path, for_inference=True)
    cpu = torch.device("cpu")
    task = build_task("text_classification", config, spec, None, cpu)
    loader = torch.utils.data.DataLoader(
        splits["val"], batch_size=64, collate_fn=task.eval_collate_fn()
    )
    scores = score(model, loader, task, cpu, keep_predictions=True)
    return spec.class_names, scores["probabilities"], scores["targets"]


def one_line(text: str) -> str:
    return " ".join(text.split())


def read_tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def read_mistakes(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "mistakes.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_classifier_layer_maps_the_text_features_to_the_logits(name):
    model = build_model(name, SPEC).eval()
    layer = model_info(name).embedding_layer(model)
    captured = []
    layer.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    lengths = torch.tensor([5, 3])
    mask = torch.arange(5) < lengths[:, None]
    ids = torch.randint(3, SPEC.vocab_size, (2, 5)) * mask
    with torch.no_grad():
        logits = model({"ids": ids, "mask": mask, "lengths": lengths})
        (features,) = captured
        assert features.shape[0] == 2 and layer.out_features == 3
        torch.testing.assert_close(layer(features), logits)


@pytest.mark.slow
def test_the_projector_metadata_holds_each_validation_text_on_one_short_line(text_run):
    run_dir, val, logger = text_run
    class_names, probabilities, targets = best_checkpoint_scores(run_dir)
    predictions = probabilities.argmax(dim=1)
    metadata = read_tsv(run_dir / "embeddings" / "metadata.tsv")
    assert metadata[0] == ["index", "text", "label", "prediction"]
    assert len(metadata) == 1 + len(val)  # every text: fewer than --embeddings
    for index, ((text, label), row) in enumerate(zip(val, metadata[1:], strict=True)):
        shown = row[1]
        assert len(shown) <= 80 and "\t" not in shown and "\n" not in shown
        if len(one_line(text)) <= 80:
            assert shown == one_line(text)
        else:
            assert shown.endswith("…") and one_line(text).startswith(shown[:-1])
        assert row == [str(index), shown, label, class_names[predictions[index]]]
    assert len(one_line(val[-1][0])) > 80  # the long text was cut
    assert logger.embeddings.texts == [row[1] for row in metadata[1:]]
    assert logger.embeddings.thumbnails is None  # no pictures for texts
    features = logger.embeddings.features
    assert features.shape[0] == len(val) and features.dtype == torch.float32


@pytest.mark.slow
def test_mistakes_csv_lists_best_pts_wrong_predictions_most_confident_first(text_run):
    run_dir, val, logger = text_run
    class_names, probabilities, targets = best_checkpoint_scores(run_dir)
    confidences, predictions = probabilities.max(dim=1)
    wrong = (predictions != targets).nonzero().flatten().tolist()
    rows = read_mistakes(run_dir)
    assert 0 < len(rows) == len(wrong)  # --mistakes is over the count: every one of them
    assert all(row["true"] != row["predicted"] for row in rows)
    shown = [float(row["confidence"]) for row in rows]
    assert shown == sorted(shown, reverse=True)
    assert sorted(mistake.index for mistake in logger.mistakes) == wrong
    for row, mistake in zip(rows, logger.mistakes, strict=True):
        index = mistake.index
        assert row["text"] == mistake.text == val[index][0]
        assert row["true"] == val[index][1] == class_names[targets[index]]
        assert row["predicted"] == class_names[predictions[index]]
        assert float(row["confidence"]) == pytest.approx(float(confidences[index]), abs=1e-4)
    assert logger.grid is None  # a table, not a gallery
    assert not (run_dir / "mistakes.png").exists()


@pytest.mark.slow
def test_a_text_with_a_comma_quotes_and_a_line_break_comes_back_whole(text_run):
    run_dir, val, _ = text_run
    quoted, _ = val[-2]
    assert "," in quoted and '"' in quoted and "\n" in quoted
    (row,) = [row for row in read_mistakes(run_dir) if row["text"] == quoted]
    assert (row["true"], row["predicted"]) == ("en", "de")
