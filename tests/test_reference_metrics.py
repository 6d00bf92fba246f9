"""The same command with the same seed keeps giving the same metrics.jsonl values.

Three kept runs, whose every recorded value but the timings must come out again: the default
recipe on digits, a photo folder read by two loader workers, and a two-process DDP run. A change
that moves them changes what users get from a command they already run, so it must be meant:
`UPDATE_REFERENCE_METRICS=1 pytest tests/test_reference_metrics.py` rewrites the files, and the
diff shows by how much. The runs are pinned to AVX2 kernels (PyTorch's own and oneDNN's) and one
thread per process, so that any x86-64 CPU with AVX2 computes them alike: unpinned, an AVX-512
CPU's convolutions round otherwise and the runs drift apart by a sample's accuracy within two
epochs. Losses and accuracies are still compared to a small tolerance.
"""

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import NO_INSIGHT, SLUG, read_metrics, run_command
from photos import build_photo_folder

REFERENCES = Path(__file__).parent / "reference_metrics"
TIMINGS = {"samples_per_second", "epoch_seconds"}
COMMON = ["--epochs", "2", "--deterministic", "--seed", "3", "--no-progress", *NO_INSIGHT]
PHOTOS = ["--dataset", "image_folder", "--image-size", "32", "--batch-size", "12"]
PHOTOS += ["--num-workers", "2"]
SAME_KERNELS_EVERYWHERE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
}
CASES = {
    "digits_default": ([], 1),
    "image_folder_workers": (PHOTOS, 1),
    "digits_ddp_2_processes": ([], 2),
}


def fresh_train_command(processes: int) -> list[str]:
    """Train in fresh interpreters, not the preloading launcher's: torch must start under the
    pinned kernels."""
    if processes == 1:
        return [sys.executable, "-m", f"{SLUG}.train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    return [*torchrun, "--standalone", "-m", f"{SLUG}.train"]


def kept_values(records: list[dict]) -> list[dict]:
    return [
        {key: value for key, value in record.items() if key not in TIMINGS} for record in records
    ]


def assert_same_values(actual, expected, where: str = "") -> None:
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same_values(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for index, (got, kept) in enumerate(zip(actual, expected, strict=True)):
            assert_same_values(got, kept, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-6), where
    else:
        assert actual == expected, where


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_same_command_gives_the_kept_metrics(render, tmp_path, case):
    flags, processes = CASES[case]
    project = render(multi_gpu="ddp")
    if "image_folder" in flags:
        build_photo_folder(tmp_path / "photos", "train_val", classes=3, train_per_class=24)
        flags = [*flags, "--data-dir", str(tmp_path / "photos")]
    command = [*fresh_train_command(processes), *COMMON, *flags]
    command += ["--output-dir", str(tmp_path), "--name", case]
    result = run_command(command, project, **SAME_KERNELS_EVERYWHERE)
    assert result.returncode == 0, result.stderr[-3000:]
    values = kept_values(read_metrics(tmp_path / case))
    reference = REFERENCES / f"{case}.json"
    if os.environ.get("UPDATE_REFERENCE_METRICS") == "1":
        reference.write_text(json.dumps(values, indent=1) + "\n")
    assert_same_values(values, json.loads(reference.read_text()), case)
