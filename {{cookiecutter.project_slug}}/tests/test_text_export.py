"""Text models as model.onnx: each exports with dynamic batch and sequence axes and agrees with
PyTorch on batches of other lengths than export's example, the file carries its tokenizer, a
service classifies with onnxruntime and tokenizers alone, and predict reads model.onnx as it
reads best.pt."""

import csv
import io
import json
import random
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch

from {{ cookiecutter.project_slug }} import export, predict
from {{ cookiecutter.project_slug }}.config.parser import saved_config
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.models import build_model
from {{ cookiecutter.project_slug }}.runs import onnx_model
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint, load_model_weights
from {{ cookiecutter.project_slug }}.tasks import build_task
from {{ cookiecutter.project_slug }}.train import main as train_main

from conftest import predicted

TOPICS = {
    "weather": "rain sun cloud wind snow storm warm cold fog frost",
    "food": "bread cheese apple soup rice pasta salad cake pepper honey",
    "sport": "ball goal team match race score coach player court medal",
}
MAX_LENGTH = 24
TINY_RUN = ["--dataset", "text_files", "--vocab-size", "300", "--max-length", str(MAX_LENGTH)]
TINY_RUN += ["--batch-size", "16", "--epochs", "1", "--warmup-epochs", "0", "--no-progress"]
{%- if cookiecutter.insight == "yes" %}
TINY_RUN += ["--embeddings", "0", "--mistakes", "0"]
{%- endif %}
# The bag of embeddings exports in seconds; the sequence models' tests are slow.
MODELS = [
    "bag_of_embeddings",
    pytest.param("bigru", marks=pytest.mark.slow),
    pytest.param("transformer", marks=pytest.mark.slow),
]
# The README's onnxruntime example for text (keep the two the same), run as it stands in a
# folder holding only model.onnx.
README_EXAMPLE = """
import json

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
spec = json.loads(session.get_modelmeta().custom_metadata_map["data_spec"])
tokenizer = Tokenizer.from_str(spec["tokenizer"])
text = "The match ended with a late goal."
ids = np.array([tokenizer.encode(text).ids[: spec["max_length"]]], np.int64)
mask = np.ones_like(ids, bool)  # one text: no padding
(logits,) = session.run(None, {"ids": ids, "mask": mask, "lengths": mask.sum(1, np.int64)})
probabilities = np.exp(logits[0] - logits[0].max()) / np.exp(logits[0] - logits[0].max()).sum()
print(spec["class_names"][probabilities.argmax()], f"{probabilities.max():.3f}")
"""
README_SENTENCE = re.search(r'^text = "(.*)"$', README_EXAMPLE, re.MULTILINE).group(1)
WITHOUT_TORCH = "\nimport sys\n\nassert 'torch' not in sys.modules, 'the example imported torch'\n"


def write_texts(path: Path) -> Path:
    """A CSV of short texts of 2 to 14 of their topic's words."""
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        for label, words in TOPICS.items():
            for _ in range(24):
                writer.writerow([" ".join(rng.choices(words.split(), k=rng.randint(2, 14))), label])
    return path


@pytest.fixture(scope="module")
def run_of(tmp_path_factory):
    """The run folder of a tiny --export-onnx run of a model (trained once per module)."""
    root = tmp_path_factory.mktemp("text_export")
    data = write_texts(root / "texts.csv")
    runs = {}

    def run(model: str) -> Path:
        if model not in runs:
            flags = [*TINY_RUN, "--data-dir", str(data), "--model", model, "--export-onnx"]
            assert train_main([*flags, "--output-dir", str(root), "--name", model]) == 0
            runs[model] = root / model
        return runs[model]

    return run


def random_batch(spec: DataSpec, lengths: list[int]) -> dict[str, torch.Tensor]:
    """Texts of these token counts, right-padded to the longest, as predict batches them."""
    task = build_task("text_classification", saved_config({}), spec, None, torch.device("cpu"))
    texts = [torch.randint(3, spec.vocab_size, (length,)) for length in lengths]
    return task.predict_batch(texts)


def checkpoint_model(path: Path) -> tuple[torch.nn.Module, DataSpec]:
    checkpoint = load_checkpoint(path)
    spec = DataSpec.from_dict(checkpoint["data_spec"])
    model = build_model(checkpoint["config"]["model"], spec)
    load_model_weights(model, checkpoint, path, for_inference=True)
    return model.eval(), spec


def cpu_session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_agrees_with_pytorch_on_batches_of_other_lengths(run_of, name):
    run_dir = run_of(name)
    model, spec = checkpoint_model(run_dir / "best.pt")
    session = cpu_session(run_dir / "model.onnx")
    assert [graph_input.name for graph_input in session.get_inputs()] == ["ids", "mask", "lengths"]
    torch.manual_seed(0)
    for lengths in ([3], [MAX_LENGTH, 9, 1, 17, 2]):
        batch = random_batch(spec, lengths)
        with torch.no_grad():
            expected = model(batch)
        (actual,) = session.run(None, {key: tensor.numpy() for key, tensor in batch.items()})
        assert actual.shape == (len(lengths), spec.num_classes)
        torch.testing.assert_close(torch.from_numpy(actual), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_export_command_verifies_a_text_model_quietly(run_of, name, tmp_path, capsys, caplog):
    output = tmp_path / "exported" / "model.onnx"
    checkpoint = run_of(name) / "best.pt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert export.main(["--checkpoint", str(checkpoint), "--output", str(output)]) == 0
    assert f"<= {onnx_model.TOLERANCE:g}" in capsys.readouterr().out
    assert [path.name for path in output.parent.iterdir()] == ["model.onnx"]
    # The notes the exporter and its optimiser make about their own workings are left out.
    notes = [
        str(warning.message)
        for warning in caught
        if any(re.match(note, str(warning.message)) for note in onnx_model.EXPORTER_WARNINGS)
    ]
    assert notes == []
    logged = [record.name for record in caplog.records]
    assert not [name for name in logged if name.startswith(onnx_model.EXPORTER_LOGGERS)]


def test_the_file_records_the_tokenizer_and_the_whole_data_spec(run_of):
    run_dir = run_of("bag_of_embeddings")
    session = cpu_session(run_dir / "model.onnx")
    metadata = session.get_modelmeta().custom_metadata_map
    values = {key: json.loads(value) for key, value in metadata.items()}
    spec = load_checkpoint(run_dir / "best.pt")["data_spec"]
    assert values["task"] == "text_classification"
    assert values["data_spec"] == spec and values["class_names"] == sorted(TOPICS)
    assert values["data_spec"]["tokenizer"] == (run_dir / "tokenizer.json").read_text()
    assert values["data_spec"]["max_length"] == MAX_LENGTH
    assert "input_size" not in values  # image preprocessing's keys are for image models


def test_readme_example_classifies_like_predict_without_torch(run_of, tmp_path):
    run_dir = run_of("bag_of_embeddings")
    service = tmp_path / "service"  # model.onnx alone, as a service receives it
    service.mkdir()
    shutil.copy(run_dir / "model.onnx", service)
    by_onnx = subprocess.run(
        # -X utf8: an interpreter option, so a fresh interpreter even under a launcher that
        # preloads torch.
        [sys.executable, "-X", "utf8", "-c", README_EXAMPLE + WITHOUT_TORCH],
        cwd=service,
        capture_output=True,
        text=True,
    )
    assert by_onnx.returncode == 0, by_onnx.stderr[-2000:]
    output = tmp_path / "predictions.csv"
    arguments = [README_SENTENCE, "--checkpoint", str(run_dir / "best.pt"), "--output", str(output)]
    assert predict.main(arguments) == 0
    with open(output, newline="", encoding="utf-8") as file:
        (row,) = csv.DictReader(file)
    onnx_class, onnx_probability = by_onnx.stdout.split()
    assert onnx_class == row["class"]
    assert float(onnx_probability) == pytest.approx(float(row["probability"]), abs=1e-3)


def predictions(tmp_path: Path, model: Path, monkeypatch) -> dict[str, dict[str, float]]:
    """predict's top classes for a text argument, a file's lines and stdin's."""
    texts = tmp_path / "texts.txt"
    texts.write_text("warm sun and a little rain\n\nbread with honey and cheese\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("the coach and his team\n"))
    output = tmp_path / f"{model.suffix[1:]}.csv"
    arguments = ["a goal in the last match", str(texts), "-", "--top-k", "3"]
    assert predict.main([*arguments, "--checkpoint", str(model), "--output", str(output)]) == 0
    return predicted(output)


@pytest.mark.parametrize("name", MODELS)
def test_predict_reads_model_onnx_as_it_reads_best_pt(run_of, name, tmp_path, monkeypatch):
    run_dir = run_of(name)
    from_checkpoint = predictions(tmp_path, run_dir / "best.pt", monkeypatch)
    from_onnx = predictions(tmp_path, run_dir / "model.onnx", monkeypatch)
    texts = tmp_path / "texts.txt"
    rows = ["a goal in the last match", f"{texts}:1", f"{texts}:3", "stdin:1"]
    assert list(from_onnx) == list(from_checkpoint) == rows
    for row, expected in from_checkpoint.items():
        actual = from_onnx[row]
        assert list(actual) == list(expected)  # the same classes in the same order
        assert actual == pytest.approx(expected, abs=1e-4)


def test_a_text_model_without_its_data_spec_is_refused_in_one_line(run_of, tmp_path, capsys):
    model = onnx.load(run_of("bag_of_embeddings") / "model.onnx")
    kept = [prop for prop in model.metadata_props if prop.key != "data_spec"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    older = tmp_path / "model.onnx"
    onnx.save(model, older)
    output = tmp_path / "predictions.csv"
    assert predict.main(["some text", "--checkpoint", str(older), "--output", str(output)]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("error:") and "does not record its classes and preprocessing" in error
    assert not output.exists()
