import json
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.project_slug }}.train import main as train_main

# A second or two per run: tiny synthetic data; test_train.py also trains on digits.
QUICK = ["--dataset", "fake", "--fake-samples", "160", "--image-size", "8", "--batch-size", "32"]
QUICK += ["--epochs", "1", "--warmup-epochs", "0", "--no-progress"]


@pytest.fixture
def train(tmp_path):
    """Run the train command in-process under tmp_path; return the run folder."""

    def run(*flags: str, name: str = "run") -> Path:
        exit_code = train_main([*QUICK, "--output-dir", str(tmp_path), "--name", name, *flags])
        assert exit_code == 0
        return tmp_path / name

    return run


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def load_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip, saying why, where no CUDA GPU is visible."""
    if torch.cuda.is_available():
        return
    needs_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(needs_gpu)
