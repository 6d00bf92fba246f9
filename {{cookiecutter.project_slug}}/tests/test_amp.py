{% if cookiecutter.insight == "yes" -%}
import numpy as np
{% endif -%}
import pytest
import torch

from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
{%- if cookiecutter.insight == "yes" %}


def test_bfloat16_autocast_trains_on_cpu_and_grad_cam_runs_beside_it(train):
    run_dir = train("--amp", "--device", "cpu", "--cam-every", "1", "--embeddings", "100")
    assert "autocast bfloat16" in (run_dir / "train.log").read_text()
    # best.pt's end-of-run features come from a float32 pass: finer than bfloat16 can hold
    saved = np.loadtxt(run_dir / "embeddings" / "features.tsv", delimiter="\t")
    features = torch.from_numpy(saved).float()
    assert torch.isfinite(features).all()
    as_bfloat16 = features.bfloat16().float()  # what a bfloat16 pass could have written
    assert not torch.allclose(features, as_bfloat16, rtol=1e-5, atol=0)
    assert (run_dir / "cam" / "epoch-001.png").stat().st_size > 0
{%- else %}


def test_bfloat16_autocast_trains_on_cpu(train):
    run_dir = train("--amp", "--device", "cpu")
    assert "autocast bfloat16" in (run_dir / "train.log").read_text()
{%- endif %}


@pytest.mark.slow
def test_float16_checkpoints_the_grad_scaler(train):
    checkpoint = load_checkpoint(
        train("--amp", "--amp-dtype", "float16", "--device", "cpu") / "last.pt"
    )
    assert checkpoint["precision"]["scale"] > 0


@pytest.mark.gpu
def test_float16_with_grad_scaler_on_cuda(train):
    checkpoint = load_checkpoint(
        train("--amp", "--amp-dtype", "float16", "--device", "cuda") / "last.pt"
    )
    assert checkpoint["precision"]["_growth_tracker"] >= 0
    assert torch.isfinite(torch.tensor(checkpoint["best_metric"]))
