"""Time to first model and start-up cost, from a fresh clone of the template.

Clones the template's committed state into a scratch folder and there, as a new user would:
`make install` (virtual environment and pinned wheels), `make demo` (render the default project,
train it on digits, export ONNX). Then, in the demo project, with the clone's environment: the
wall time of `train --help` and whether it imports torch, and where a 1-epoch run's time goes
(interpreter start, imports, set-up, training). Prints one table and the bars of PRODUCT.md §7.

    python3 benchmarks/time_to_first_model.py          # about 3 minutes on 2 cores
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".scratch" / "benchmarks" / "first-model"
PACKAGE = "image_classifier"  # the slug the template's default project name gives
DEMO_BAR_SECONDS = 300
TRAINING_BAR_SECONDS = 60
ACCURACY_BAR = 0.97
HELP_BAR_SECONDS = 1.0
TRAINED_LINE = re.compile(r"trained to epoch \d+ in ([\d.]+) s")
# `-X importtime` lines: "import time: self [us] | cumulative | imported package"; a top-level
# import has exactly one space before its name, nested ones are indented further.
TOP_LEVEL_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str, str]:
    """Run a command to completion; return its wall seconds, stdout and stderr."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{result.stdout[-2000:]}{result.stderr}")
    return seconds, result.stdout, result.stderr


def fresh_clone(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)


def demo_results(run_dir: Path) -> dict:
    """The demo run's training seconds (train.log) and accuracy curve (metrics.jsonl)."""
    trained = TRAINED_LINE.search((run_dir / "train.log").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    reaching_bar = [record["epoch"] for record in records if record["val_acc"] >= ACCURACY_BAR]
    return {
        "training_seconds": float(trained.group(1)),
        "epochs": len(records),
        "best_val_acc": max(record["val_acc"] for record in records),
        "first_epoch_at_bar": reaching_bar[0] if reaching_bar else None,
    }


def median_wall(command: list[str], cwd: Path, env: dict, repeats: int) -> float:
    return statistics.median(timed(command, cwd, env)[0] for _ in range(repeats))


def imported_modules(importtime_log: str) -> list[str]:
    return [line.rsplit("|", 1)[-1].strip() for line in importtime_log.splitlines()]


def import_seconds(importtime_log: str) -> float:
    """Seconds spent importing in a process run with `-X importtime` (top-level imports)."""
    total_us = 0
    for line in importtime_log.splitlines():
        match = TOP_LEVEL_IMPORT.match(line)
        if match:
            total_us += int(match.group(1))
    return total_us / 1e6


def startup_figures(project: Path, python: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    train = [python, "-m", f"{PACKAGE}.train"]
    _, _, help_imports = timed(
        [python, "-X", "importtime", "-m", f"{PACKAGE}.train", "--help"], project, env
    )
    one_epoch = [*train[1:], "--epochs", "1", "--no-progress", "--name", "one-epoch"]
    shutil.rmtree(project / "runs" / "one-epoch", ignore_errors=True)
    wall, _, log = timed([python, "-X", "importtime", *one_epoch], project, env)
    training = float(TRAINED_LINE.search(log).group(1))
    imports = import_seconds(log)
    interpreter = median_wall([python, "-c", "pass"], project, env, repeats=5)
    return {
        "help_seconds": median_wall([*train, "--help"], project, env, repeats=5),
        "help_imports_torch": "torch" in imported_modules(help_imports),
        "interpreter_seconds": interpreter,
        "one_epoch_wall": wall,
        "one_epoch_imports": imports,
        "one_epoch_training": training,
        "one_epoch_rest": wall - interpreter - imports - training,
    }


def print_report(setup: float, demo: float, results: dict, startup: dict) -> None:
    first_model = setup + demo
    rows = [
        ("fresh clone: `make install` (venv + pinned wheels)", f"{setup:.1f} s"),
        ("`make demo`: render + train + ONNX export", f"{demo:.1f} s"),
        ("time to first model (the two above)", f"{first_model:.1f} s"),
        (
            f"demo training, {results['epochs']} epochs (train.log)",
            f"{results['training_seconds']:.1f} s",
        ),
        ("demo best val_acc", f"{results['best_val_acc']:.4f}"),
        (f"first epoch with val_acc >= {ACCURACY_BAR}", str(results["first_epoch_at_bar"])),
        ("`train --help` (median of 5)", f"{startup['help_seconds']:.2f} s"),
        ("`train --help` imports torch", "yes" if startup["help_imports_torch"] else "no"),
        ("1-epoch run: wall", f"{startup['one_epoch_wall']:.1f} s"),
        ("  interpreter start (`python -c pass`)", f"{startup['interpreter_seconds']:.2f} s"),
        ("  imports (`-X importtime`, top level)", f"{startup['one_epoch_imports']:.1f} s"),
        ("  training: epoch + validation + checkpoint", f"{startup['one_epoch_training']:.1f} s"),
        ("  rest: data, model summary, loggers, exit", f"{startup['one_epoch_rest']:.1f} s"),
    ]
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print()
    print("| step | figure |")
    print("| --- | ---: |")
    for name, figure in rows:
        print(f"| {name} | {figure} |")
    print()
    verdicts = [
        (f"make demo from a fresh clone < {DEMO_BAR_SECONDS} s", first_model < DEMO_BAR_SECONDS),
        (
            f"digits >= {ACCURACY_BAR} within {TRAINING_BAR_SECONDS} s of training",
            results["best_val_acc"] >= ACCURACY_BAR
            and results["training_seconds"] <= TRAINING_BAR_SECONDS,
        ),
        (
            f"--help < {HELP_BAR_SECONDS} s without torch",
            startup["help_seconds"] < HELP_BAR_SECONDS and not startup["help_imports_torch"],
        ),
    ]
    for name, holds in verdicts:
        print(f"bar {name}: {'HOLDS' if holds else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clone-dir",
        type=Path,
        default=SCRATCH / "clone",
        help="where to clone the template (emptied first)",
    )
    args = parser.parse_args()
    clone = args.clone_dir.resolve()
    fresh_clone(clone)
    setup, _, _ = timed(["make", "install"], clone)
    demo, _, _ = timed(["make", "demo"], clone)
    project = clone / ".scratch" / "demo" / PACKAGE
    results = demo_results(project / "runs" / "demo")
    startup = startup_figures(project, str(clone / ".venv" / "bin" / "python"))
    print_report(setup, demo, results, startup)


if __name__ == "__main__":
    main()
