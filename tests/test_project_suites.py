"""Every rendered combination passes its own test suite on CPU (GPU tests skip with a reason).

Four combinations that between them include every feature run their complete suite, in the
fast subset too. Every other combination runs its suite without the tests its project marks slow
(the two-process DDP launch, ONNX parity for every model and its refusal beyond tolerance,
float16 on CPU, a file broken mid-training), in the full suite only:
those 60 runs are two thirds of the full suite's time.
"""

import re

import pytest

from conftest import run_command
from options import code_shaping_combinations, combination_id

REPRESENTATIVE = [
    {"logger": "tensorboard", "mixed_precision": "yes", "multi_gpu": "ddp", "onnx_export": "yes"},
    {"logger": "wandb", "mixed_precision": "no", "multi_gpu": "dp", "onnx_export": "no"},
    {"logger": "both", "mixed_precision": "yes", "multi_gpu": "both", "onnx_export": "no"},
    {"logger": "none", "mixed_precision": "no", "multi_gpu": "none", "onnx_export": "yes"},
]


def suite_cases() -> list:
    return [
        pytest.param(
            combo,
            id=combination_id(combo),
            marks=() if combo in REPRESENTATIVE else pytest.mark.slow,
        )
        for combo in code_shaping_combinations()
    ]


@pytest.mark.parametrize("combo", suite_cases())
def test_project_passes_its_own_tests(render, preloaded_python, combo):
    project = render(**combo)
    command = [*preloaded_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    if combo not in REPRESENTATIVE:
        command += ["-m", "not slow"]
    result = run_command(command, project, WANDB_MODE="offline")
    assert result.returncode == 0, result.stdout[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary
    for line in result.stdout.splitlines():
        if line.startswith("SKIPPED"):
            assert "needs" in line and "GPU" in line, line  # only GPU tests skip, saying why
