import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from options import SHARDS, SLUG, TEMPLATE_DIR

SCRATCH = TEMPLATE_DIR / ".scratch"


def pytest_addoption(parser):
    parser.addoption(
        "--shard", choices=sorted(SHARDS), help="run only this shard's test modules (options.py)"
    )
    parser.addoption(
        "--pythons",
        action="store_true",
        help="run only the Python-versions tier (tests marked pythons), otherwise left out",
    )


def pytest_collection_modifyitems(config, items):
    shard, pythons = config.getoption("--shard"), config.getoption("--pythons")
    kept = [
        item
        for item in items
        if (item.get_closest_marker("pythons") is not None) == pythons
        and (shard is None or item.path.name in SHARDS[shard])
    ]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def pytest_configure(config):
    """cookiecutter leaves its rendered hook scripts in $TMPDIR: keep them in the scratch."""
    (SCRATCH / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(SCRATCH / "tmp")


class Renderer:
    """Bakes projects with pytest-cookies; one render per distinct set of answers."""

    def __init__(self, cookies) -> None:
        self.cookies = cookies
        self.cache: dict[tuple, Path] = {}

    def __call__(self, **answers) -> Path:
        answers.setdefault("init_git", "no")
        named = "project_name" in answers or "project_slug" in answers
        if answers.get("task") == "text_classification" and not named:
            # One import name for every project the suite runs commands in: a text project's
            # own default is text_classifier (test_text_task checks that render).
            answers["project_slug"] = SLUG
        key = tuple(sorted(answers.items()))
        if key not in self.cache:
            result = self.cookies.bake(extra_context=answers)
            assert result.exit_code == 0, result.exception
            self.cache[key] = Path(result.project_path)
        return self.cache[key]


@pytest.fixture(scope="session")
def render(cookies_session) -> Renderer:
    return Renderer(cookies_session)


FORKSERVER = TEMPLATE_DIR / "tests" / "forkserver.py"
PYTHON = sys.executable


@pytest.fixture(scope="session")
def preloaded_python(tmp_path_factory):
    """A command prefix that behaves like `python` but starts in well under a second."""
    socket_path = tmp_path_factory.mktemp("forkserver") / "socket"
    # One thread per process: two test workers (and two DDP ranks) share two cores without
    # oversubscribing them, which slows small models down several-fold.
    single_thread = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [PYTHON, str(FORKSERVER), "serve", str(socket_path)],
        env=single_thread,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout.readline().strip() == "ready", "forkserver failed to start"
    wrapper = socket_path.parent / "preloaded-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{PYTHON}" "{FORKSERVER}" "$@"\n')
    wrapper.chmod(0o755)
    os.environ["FORKSERVER_SOCKET"] = str(socket_path)
    os.environ["FORKSERVER_EXECUTABLE"] = str(wrapper)
    yield [PYTHON, str(FORKSERVER)]
    server.terminate()
    server.wait()


def run_command(
    command: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """Run a command in the project folder with its src/ importable; return the result."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=project_environment(cwd, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_command(command: list[str], cwd: Path) -> subprocess.Popen:
    """Start a command in the project folder (as run_command does) with its stderr piped."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=project_environment(cwd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def project_environment(project: Path, **env: str) -> dict:
    """The environment a project command runs in; its image-check cache stays in the scratch."""
    return {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "PYTHONUNBUFFERED": "1",
        "XDG_CACHE_HOME": str(SCRATCH / "cache"),
        **env,
    }


def train_command(python: list[str], processes: int = 1, nodes_flags: tuple = ()) -> list[str]:
    """`python -m <slug>.train`, or torchrun over `processes` preloaded-python workers."""
    if processes == 1 and not nodes_flags:
        return [*python, "-m", f"{SLUG}.train"]
    torchrun = [*python, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    torchrun += list(nodes_flags) or ["--standalone"]
    return [*torchrun, str(FORKSERVER), "-m", f"{SLUG}.train"]


# 160 fake 8x8 images: 128 to train on (4 updates of 32 per epoch), 32 to validate, 10 classes;
# a run takes a second or two. Accuracy is tested on digits and on real photographs.
TINY_DATA = [
    "--dataset",
    "fake",
    "--fake-samples",
    "160",
    "--image-size",
    "8",
    "--batch-size",
    "32",
]


# The end-of-run embeddings and mistakes, off in tiny runs unless a test looks at them.
NO_INSIGHT = ("--embeddings", "0", "--mistakes", "0")
INSIGHT = ("--embeddings", "1000", "--mistakes", "16")  # the defaults


def tiny_run(*flags: str, epochs: int = 1) -> list[str]:
    """Flags of a short run on TINY_DATA; `flags` come last, so they override."""
    return [*TINY_DATA, "--epochs", str(epochs), "--no-progress", *NO_INSIGHT, *flags]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def pytest_terminal_summary(terminalreporter):
    """Print the suite's headline counts: combinations, bad inputs, preemption, kill -9 and
    Slurm trials; for the Python-versions tier, its own line."""
    if terminalreporter.config.getoption("--pythons"):
        write_python_versions_line(terminalreporter)
        return
    reports = [
        report
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
    ]

    def count(name: str) -> tuple[int, int]:
        matching = [report for report in reports if name in report.nodeid]
        return sum(report.passed for report in matching), len(matching)

    rendered, _ = count("test_combination_renders_exactly_its_files")
    trained, _ = count("test_combination_trains_on_cpu")
    terminalreporter.write_line(f"combinations: {rendered} rendered, {trained} trained")
    matrix_seconds = [
        report.duration for report in reports if "test_combination_trains_on_cpu" in report.nodeid
    ]
    if matrix_seconds:
        terminalreporter.write_line(
            f"training matrix, per combination: {statistics.median(matrix_seconds):.1f} s "
            f"median, {max(matrix_seconds):.1f} s max; {sum(matrix_seconds):.0f} s in all"
        )
    answers, flags = count("test_bad_answer_is_rejected"), count("test_bad_input_gets_one_clear")
    terminalreporter.write_line(
        f"bad inputs: {answers[0] + flags[0]}/{answers[1] + flags[1]} clear"
    )
    preemption = ("test_signal_saves_mid_epoch", "test_time_budget_stops", "test_torchrun_restarts")
    preemption += ("test_signal_while_torch_still_loads",)
    trials = [count(name) for name in preemption]
    resumed, tried = sum(passed for passed, _ in trials), sum(total for _, total in trials)
    terminalreporter.write_line(f"preemption trials: {resumed}/{tried} resumed exactly")
    slurm = [count(name) for name in ("test_slurm_job_trains", "test_slurm_job_signalled")]
    slurm.append(count("test_cancelled_slurm_job"))
    slurm.append(count("test_slurm_job_near_its_time_limit"))
    finished, submitted = sum(passed for passed, _ in slurm), sum(total for _, total in slurm)
    terminalreporter.write_line(f"slurm trials: {finished}/{submitted} finished exactly")
    survived = total = 0
    for report in reports:
        for name, value in report.user_properties:
            if name == "kill_9_trials":
                survived, total = survived + value[0], total + value[1]
    terminalreporter.write_line(f"kill -9 trials: {survived}/{total} resumed intact")


def write_python_versions_line(terminalreporter):
    """`python versions: N/M installed, trained, exported`, and why any was skipped."""
    name = "test_python_version_installs_trains_and_exports"
    outcomes = {
        outcome: [
            report for report in terminalreporter.stats.get(outcome, []) if name in report.nodeid
        ]
        for outcome in ("passed", "failed", "skipped")
    }
    passed = [report for report in outcomes["passed"] if report.when == "call"]
    total = len({report.nodeid for reports in outcomes.values() for report in reports})
    reasons = [str(report.longrepr[-1]).removeprefix("Skipped: ") for report in outcomes["skipped"]]
    skipped = f"; skipped: {'; '.join(reasons)}" if reasons else ""
    terminalreporter.write_line(
        f"python versions: {len(passed)}/{total} installed, trained, exported{skipped}"
    )
