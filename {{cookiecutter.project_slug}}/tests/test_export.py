import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from {{ cookiecutter.project_slug }} import export
from {{ cookiecutter.project_slug }}.config.parser import saved_config
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from {{ cookiecutter.project_slug }}.errors import UserError
from {{ cookiecutter.project_slug }}.models import build_model, model_names
from {{ cookiecutter.project_slug }}.runs import onnx_model
from {{ cookiecutter.project_slug }}.tasks import build_task

SPEC = DataSpec(tuple("abcd"), 3, 16, IMAGENET_MEAN, IMAGENET_STD, resize_size=16)
TASK = build_task("image_classification", saved_config({}), SPEC, None, torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("name", model_names())
def test_every_model_exports_with_onnxruntime_parity(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, SPEC).eval()
    path = tmp_path / f"{name}.onnx"
    onnx_model.export_onnx(model, TASK, SPEC, path)
    differences = onnx_model.largest_difference(model, TASK, path)
    assert set(differences) == {1, 7}
    assert max(differences.values()) <= onnx_model.TOLERANCE


@pytest.mark.slow
def test_export_refuses_a_model_beyond_tolerance(tmp_path, monkeypatch):
    # Outputs often match bit for bit; a negative tolerance makes any result a failure.
    monkeypatch.setattr(onnx_model, "TOLERANCE", -1.0)
    model = build_model("simple_cnn", SPEC)
    with pytest.raises(UserError, match=r"differs from PyTorch by more than -1 \(batch 1: "):
        onnx_model.export_and_verify(model, TASK, SPEC, tmp_path / "model.onnx", report=print)


def test_an_output_without_onnx_is_refused_before_anything_is_written(tmp_path, capsys):
    output = tmp_path / "out" / "model"
    assert export.main(["--checkpoint", str(tmp_path / "best.pt"), "--output", str(output)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --output {output} must end in .onnx, which is how predict recognises an ONNX "
        f"model: give e.g. {output}.onnx"
    )
    assert not (tmp_path / "out").exists()


def test_export_command_writes_a_verified_model(train, tmp_path, capsys):
    run_dir = train()
    output = tmp_path / "model.onnx"
    exit_code = export.main(["--checkpoint", str(run_dir / "best.pt"), "--output", str(output)])
    assert exit_code == 0
    assert f"<= {onnx_model.TOLERANCE:g}" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        (logits,) = session.run(None, {"images": np.zeros((batch, 3, 8, 8), np.float32)})
        assert logits.shape == (batch, 10)


@pytest.mark.slow
def test_exported_file_is_self_contained_and_names_its_preprocessing(train, tmp_path):
    run_dir = train()
    output = tmp_path / "export" / "model.onnx"
    assert export.main(["--checkpoint", str(run_dir / "best.pt"), "--output", str(output)]) == 0
    assert [path.name for path in output.parent.iterdir()] == ["model.onnx"]  # no .data file
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(output, alone / "model.onnx")
    session = onnxruntime.InferenceSession(alone / "model.onnx", providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    values = {key: json.loads(value) for key, value in metadata.items()}
    assert values["task"] == "image_classification"
    assert values["class_names"] == [str(index) for index in range(10)]
    assert values["input_size"] == [3, 8, 8] and values["resize_size"] == 8
    assert values["mean"] == pytest.approx(IMAGENET_MEAN) and values["std"] == pytest.approx(
        IMAGENET_STD
    )
    (logits,) = session.run(None, {"images": np.zeros((2, 3, 8, 8), np.float32)})
    assert logits.shape == (2, 10)


@pytest.mark.slow
def test_compiled_ema_run_exports_the_ema_weights(train, tmp_path):
    run_dir = train("--model", "mlp", "--compile", "--ema", "0.9", "--export-onnx")
    checkpoint = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    spec = DataSpec.from_dict(checkpoint["data_spec"])
    images = torch.randn(3, spec.in_channels, spec.image_size, spec.image_size)
    onnx_file = run_dir / "model.onnx"
    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    outputs = {}
    for weights in ("ema", "model"):
        model = build_model("mlp", spec).eval()
        state = checkpoint["ema"]["weights"] if weights == "ema" else checkpoint["model"]
        model.load_state_dict(state)
        with torch.no_grad():
            outputs[weights] = model(images).numpy()
    assert np.abs(logits - outputs["ema"]).max() <= onnx_model.TOLERANCE
    assert np.abs(logits - outputs["model"]).max() > onnx_model.TOLERANCE
