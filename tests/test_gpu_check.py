"""benchmarks/gpu_check.py (`make gpu-check`): without CUDA it refuses in one line before it
renders anything; its CPU dry run (--allow-cpu) goes through every stage."""

import subprocess
import sys

import pytest
import torch

from options import TEMPLATE_DIR

SCRIPT = TEMPLATE_DIR / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="CUDA is visible here: gpu_check.py would run for real"
)


def gpu_check(*flags: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=timeout
    )


def test_without_cuda_it_says_so_in_one_line_and_renders_nothing(tmp_path):
    scratch = tmp_path / "gpu-check"
    result = gpu_check("--scratch", str(scratch), timeout=60)
    assert result.returncode == 1
    build = torch.version.cuda or "none"
    assert result.stderr == (
        f"gpu-check: no CUDA GPU visible here (torch {torch.__version__}, CUDA build {build}): "
        "run it on a machine with a GPU\n"
    )
    assert result.stdout == ""
    assert not scratch.exists()


@pytest.mark.slow
def test_cpu_dry_run_goes_through_every_stage(tmp_path):
    result = gpu_check("--allow-cpu", "--scratch", str(tmp_path / "gpu-check"), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "gpu matrix: 2/2 trained on cpu" in lines
    assert any(line.startswith("stage 2/3 pytest -m gpu: passed in") for line in lines)
    assert any(line.startswith("| simple_cnn | fp32 |") for line in lines)
    assert lines[-1].startswith("gpu-check: passed in")
