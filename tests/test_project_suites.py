"""Rendered projects pass their own test suites on CPU (GPU tests skip with a reason).

The all-options combination runs its complete suite, in the fast subset too. The minimal
combination (also in the fast subset; without sweeps and insight either) and an all-pairs set
of combinations (in the full suite only) run their suites without the tests their projects mark
slow (the two-process DDP launch, ONNX parity for every model, compiling, sweeps in child
processes or started at once, a file broken mid-training, predict on a shared trained run,
Grad-CAM runs, Grad-CAM and insight read back from TensorBoard and wandb): those exercise no
option's code beyond what the all-options suite and the training matrix (`--cam-every 2`
through every logger) run them with. Every value of each code-shaping option meets every value
of each other one in some suite: 16 suites instead of 64 (each takes about 30 s), the fewest
that can (logger x multi_gpu alone has 16 pairs). All 64 combinations are still rendered,
linted and trained by the training matrix.
"""

import itertools
import re

import pytest

from conftest import run_command
from options import CHOICE_OPTIONS, CODE_SHAPING, combination_id, pairwise_combinations

# Every feature (its suite in full), and none.
REPRESENTATIVE = [
    {"logger": "both", "mixed_precision": "yes", "multi_gpu": "both", "onnx_export": "yes"},
    {"logger": "none", "mixed_precision": "no", "multi_gpu": "none", "onnx_export": "no"}
    | {"sweeps": "no", "insight": "no"},
]


def suite_cases() -> list:
    return [
        pytest.param(
            combo,
            id=combination_id(combo),
            marks=() if combo in REPRESENTATIVE else pytest.mark.slow,
        )
        for combo in pairwise_combinations(REPRESENTATIVE)
    ]


def test_suites_meet_every_pair_of_option_values():
    suites = [case.values[0] for case in suite_cases()]
    assert len(suites) == len({combination_id(combo) for combo in suites}) == 16
    for first, second in itertools.combinations(CODE_SHAPING, 2):
        for pair in itertools.product(CHOICE_OPTIONS[first], CHOICE_OPTIONS[second]):
            assert any((combo[first], combo[second]) == pair for combo in suites), (first, second)


@pytest.mark.parametrize("combo", suite_cases())
def test_project_passes_its_own_tests(render, preloaded_python, combo):
    project = render(**combo)
    command = [*preloaded_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    if combo != REPRESENTATIVE[0]:
        command += ["-m", "not slow"]
    result = run_command(command, project, WANDB_MODE="offline")
    assert result.returncode == 0, failures(result.stdout)
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary
    for line in result.stdout.splitlines():
        if line.startswith("SKIPPED"):
            assert "needs" in line and "GPU" in line, line  # only GPU tests skip, saying why


def failures(output: str) -> str:
    """pytest's report of what failed (its captured logs can run to pages), else its tail."""
    start = output.find("= FAILURES =")
    return output[start : start + 6000] if start >= 0 else output[-4000:]
