import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from {{ cookiecutter.project_slug }} import predict
from {{ cookiecutter.project_slug }}.runs import onnx_model

from conftest import predicted

# Like test_predict.py: one shared trained run, so the all-options project runs these.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def onnx_file(predict_run, tmp_path_factory) -> Path:
    """The tiny run's best.pt exported to model.onnx."""
    run_dir, _ = predict_run
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    onnx_model.export_checkpoint(run_dir / "best.pt", path, report=lambda line: None)
    return path


def predictions(tmp_path: Path, images: Path, model: Path) -> dict[str, dict[str, float]]:
    output = tmp_path / f"{model.stem}.csv"
    assert predict.main([str(images), "--checkpoint", str(model), "--output", str(output)]) == 0
    return predicted(output)


def test_onnx_predictions_agree_with_the_checkpoint(predict_run, onnx_file, tmp_path, capsys):
    run_dir, images = predict_run
    from_checkpoint = predictions(tmp_path, images, run_dir / "best.pt")
    from_onnx = predictions(tmp_path, images, onnx_file)
    assert list(from_onnx) == list(from_checkpoint) and len(from_onnx) == 5
    for path, expected in from_checkpoint.items():
        actual = from_onnx[path]
        assert max(actual, key=actual.get) == max(expected, key=expected.get)
        assert actual == pytest.approx(expected, abs=1e-4)
    assert "skipped 2 of 7 files" in capsys.readouterr().err


def test_an_onnx_model_without_its_suffix_is_refused_saying_so(
    predict_run, onnx_file, tmp_path, capsys
):
    _, images = predict_run
    renamed = tmp_path / "model"
    shutil.copy(onnx_file, renamed)
    output = tmp_path / "predictions.csv"
    assert predict.main([str(images), "--checkpoint", str(renamed), "--output", str(output)]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: {renamed} is truncated or not a PyTorch checkpoint, and not")
    assert "named *.onnx as an ONNX model must be" in error
    assert not output.exists()


def test_a_file_exported_before_the_task_was_recorded_still_predicts(
    predict_run, onnx_file, tmp_path
):
    _, images = predict_run
    model = onnx.load(onnx_file)
    kept = [prop for prop in model.metadata_props if prop.key != "task"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    older = tmp_path / "older.onnx"
    onnx.save(model, older)
    assert predictions(tmp_path, images, older) == predictions(tmp_path, images, onnx_file)


def without_metadata(root: Path) -> Path:
    """A valid ONNX model (logits = images) that records no classes or preprocessing."""
    shape = ["batch", 3]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["logits"])],
        "bare",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, root / "bare.onnx")
    return root / "bare.onnx"


def not_onnx(root: Path) -> Path:
    (root / "text.onnx").write_text("not a model")
    return root / "text.onnx"


def missing(root: Path) -> Path:
    return root / "missing.onnx"


@pytest.mark.parametrize(
    "model, message",
    [
        (without_metadata, "does not record its classes and preprocessing"),
        (not_onnx, "is not an ONNX model onnxruntime can load"),
        (missing, "missing.onnx does not exist"),
    ],
)
def test_onnx_mistakes_get_one_line(predict_run, tmp_path, capsys, model, message):
    _, images = predict_run
    output = tmp_path / "predictions.csv"
    path = model(tmp_path)
    assert predict.main([str(images), "--checkpoint", str(path), "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (error,) = captured.err.splitlines()
    assert error.startswith("error:") and message in error
    assert not output.exists()
