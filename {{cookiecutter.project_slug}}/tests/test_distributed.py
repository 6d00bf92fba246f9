import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import QUICK, load_weights

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
SBATCH = Path(__file__).resolve().parent.parent / "slurm" / "train.sbatch"


def torchrun(tmp_path, processes: int, *flags: str) -> subprocess.CompletedProcess:
    command = [
        *TORCHRUN,
        f"--nproc_per_node={processes}",
        "-m",
        "{{ cookiecutter.project_slug }}.train",
        *QUICK,
        "--output-dir",
        str(tmp_path),
        "--name",
        "ddp",
        *flags,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


{%- if cookiecutter.insight == "yes" %}


@pytest.mark.slow
def test_two_gloo_processes_train_and_only_rank0_writes(tmp_path):
    views = ("--cam-every", "1", "--embeddings", "100", "--mistakes", "4")
    result = torchrun(tmp_path, 2, "--device", "cpu", *views)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2" in result.stderr
    assert len(load_weights(tmp_path / "ddp" / "last.pt")) > 0
    assert (
        len(list((tmp_path / "ddp").glob("*.pt"))) == 2
    )  # last.pt and best.pt, no per-rank copies
    # Rank 0 alone looks at best.pt on the whole validation split (32 images), not its share.
    embedded = (tmp_path / "ddp" / "embeddings" / "metadata.tsv").read_text().splitlines()
    assert len(embedded) == 1 + 32 and result.stderr.count("looked at best.pt") == 1
    # Rank 0 alone draws Grad-CAM, outside every collective: the others never wait for it.
    assert [path.name for path in (tmp_path / "ddp" / "cam").iterdir()] == ["epoch-001.png"]
{%- else %}


@pytest.mark.slow
def test_two_gloo_processes_train_and_only_rank0_writes(tmp_path):
    result = torchrun(tmp_path, 2, "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2" in result.stderr
    assert len(load_weights(tmp_path / "ddp" / "last.pt")) > 0
    assert (
        len(list((tmp_path / "ddp").glob("*.pt"))) == 2
    )  # last.pt and best.pt, no per-rank copies
{%- endif %}


@pytest.mark.slow
def test_two_compiled_gloo_processes_train_identical_replicas(tmp_path):
    result = torchrun(tmp_path, 2, "--device", "cpu", "--model", "mlp", "--compile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "parameters identical on all 2 ranks" in result.stderr
    weights = load_weights(tmp_path / "ddp" / "last.pt")
    assert not [key for key in weights if "_orig_mod" in key or key.startswith("module.")]


@pytest.mark.slow
def test_two_gloo_processes_train_with_balanced_sampling(tmp_path):
    result = torchrun(tmp_path, 2, "--device", "cpu", "--balanced-sampling")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2" in result.stderr
    assert "balanced sampling" in result.stderr
    assert len(load_weights(tmp_path / "ddp" / "last.pt")) > 0


@pytest.mark.gpu
def test_nccl_on_every_visible_gpu(tmp_path):
    result = torchrun(tmp_path, torch.cuda.device_count(), "--device", "cuda")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"world size {torch.cuda.device_count()}" in result.stderr


def test_sbatch_script_parses_and_outside_slurm_says_how_to_submit(tmp_path):
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    outside = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", str(SBATCH), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=outside,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {SBATCH} runs inside a Slurm job: submit it with")
    assert list(tmp_path.iterdir()) == []


def test_launch_reports_a_mistake_once_without_a_traceback(tmp_path):
    launch = [sys.executable, "-m", "{{ cookiecutter.project_slug }}.launch", "--standalone"]
    command = [*launch, "--nproc-per-node=2", "-m", "{{ cookiecutter.project_slug }}.train"]
    result = subprocess.run(
        [*command, "--epochs", "0", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--epochs" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
