"""A checkpoint written by an earlier release still resumes and evaluates.

kept_checkpoints/simple_cnn-fake-epoch-1-of-2.pt is the last.pt of `train` with tiny_run's flags
and `--epochs 2 --stop-after-epochs 1`, written before the package was laid out anew: its keys,
its config and its data record must keep loading, whatever moves inside the package.
"""

import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY_DATA, read_metrics, run_command, train_command
from options import SLUG

KEPT = Path(__file__).parent / "kept_checkpoints" / "simple_cnn-fake-epoch-1-of-2.pt"


@pytest.mark.parametrize(
    "answers",
    # Its config holds cam_every, embeddings and mistakes, which a project without insight lacks.
    [{}, {"insight": "no", "sweeps": "no"}],
    ids=["default", "without sweeps and insight"],
)
def test_an_earlier_releases_checkpoint_resumes_and_evaluates(
    render, preloaded_python, tmp_path, answers
):
    project = render(**answers)
    checkpoint = tmp_path / "kept" / "last.pt"
    checkpoint.parent.mkdir()
    shutil.copy(KEPT, checkpoint)
    flags = [*TINY_DATA, "--epochs", "2", "--no-progress"]  # flags every project has
    command = [*train_command(preloaded_python), *flags, "--output-dir", str(tmp_path)]
    result = run_command([*command, "--resume", str(checkpoint), "--name", "continued"], project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr
    assert [record["epoch"] for record in read_metrics(tmp_path / "continued")] == [2]

    evaluate = [*preloaded_python, "-m", f"{SLUG}.evaluate", "--checkpoint", str(checkpoint)]
    result = run_command(evaluate, project)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "kept" / "eval_val_last.json").read_text())
    assert report["images"] == 32
