import numpy as np
import onnxruntime

from {{ cookiecutter.project_slug }}.export import TOLERANCE
from {{ cookiecutter.project_slug }}.export import main as export_main


def test_export_command_writes_a_verified_model(train, tmp_path, capsys):
    run_dir = train()
    output = tmp_path / "model.onnx"
    assert export_main(["--checkpoint", str(run_dir / "best.pt"), "--output", str(output)]) == 0
    assert f"<= {TOLERANCE:g}" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        (logits,) = session.run(None, {"images": np.zeros((batch, 1, 8, 8), np.float32)})
        assert logits.shape == (batch, 10)
