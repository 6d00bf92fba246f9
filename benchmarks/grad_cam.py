"""What `--cam-every 1` adds to an epoch: digits, the default model, with and without Grad-CAM.

Renders the default project and trains it in this process, in interleaved rounds of two short
runs: one without `--cam-every`, one with `--cam-every 1`. An epoch is timed from the end of one
to the end of the next, so it holds everything a run does per epoch: training, validation,
Grad-CAM with its PNG and TensorBoard grid, the checkpoint. Each run's first epoch is left out
(warm-up). Prints a table of epoch times and the bar: at most 10 % more with Grad-CAM.

    .venv/bin/python benchmarks/grad_cam.py 2>/dev/null   # 5 rounds of 6-epoch runs
    .venv/bin/python benchmarks/grad_cam.py --quick       # smoke run
"""

import argparse
import itertools
import os
import platform
import shutil
import statistics
import sys
import time

import torch
from rendered_project import ROOT, import_project, render_project

SCRATCH = ROOT / ".scratch" / "benchmarks" / "grad_cam"
VARIANTS = {"without --cam-every": [], "--cam-every 1": ["--cam-every", "1"]}
BAR = 1.10  # Grad-CAM may cost at most 10 % more epoch time


def epoch_clock(project: dict) -> list[float]:
    """The times at which epochs end, noted by a logger each run builds like its own (last,
    after the run's own loggers have written the epoch)."""
    ends = []

    class EpochClock(project["loggers.base"].RunLogger):
        def log_epoch(self, record: dict, step: int, model) -> None:
            ends.append(time.perf_counter())

    project["loggers.base"].register_logger(EpochClock)
    return ends


def timed_run(project: dict, ends: list[float], name: str, flags: list[str], epochs: int):
    """Epoch seconds of one run, its first epoch left out."""
    ends.clear()
    argv = ["--dataset", "digits", "--epochs", str(epochs), "--no-progress"]
    argv += ["--output-dir", str(SCRATCH / "runs"), "--name", name, *flags]
    if project["train"].main(argv) != 0:
        sys.exit(f"error: the run {name} failed")
    return [later - earlier for earlier, later in itertools.pairwise(ends)]


def measure(project: dict, rounds: int, epochs: int) -> dict[str, list[list[float]]]:
    """Per variant, each round's epoch seconds; the order within a round alternates, so that
    neither variant always runs first."""
    ends = epoch_clock(project)
    seconds = {variant: [] for variant in VARIANTS}
    for round_index in range(rounds):
        order = list(VARIANTS) if round_index % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            name = f"round{round_index + 1}-{'cam' if VARIANTS[variant] else 'plain'}"
            seconds[variant].append(timed_run(project, ends, name, VARIANTS[variant], epochs))
        medians = [f"{key} {statistics.median(seconds[key][-1]):.3f} s" for key in VARIANTS]
        print(f"round {round_index + 1}/{rounds}: {', '.join(medians)}", file=sys.stderr)
    return seconds


def paired_ratio(seconds: dict[str, list[list[float]]]) -> float:
    """Median over rounds of the with/without ratio of the round's median epoch: the two runs
    of a round saw similar background load."""
    plain, cam = seconds.values()
    return statistics.median(
        statistics.median(with_cam) / statistics.median(without)
        for without, with_cam in zip(plain, cam, strict=True)
    )


def table(seconds: dict[str, list[list[float]]]) -> str:
    lines = ["| run | epochs timed | epoch s (median) | min-max |", "| --- | ---: | ---: | ---: |"]
    for variant, rounds in seconds.items():
        epochs = [epoch for run in rounds for epoch in run]
        cells = [
            variant,
            str(len(epochs)),
            f"{statistics.median(epochs):.3f}",
            f"{min(epochs):.3f}-{max(epochs):.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line() -> str:
    return (
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {'CUDA' if torch.cuda.is_available() else 'no GPU'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved pairs of runs")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (first untimed)")
    parser.add_argument("--quick", action="store_true", help="1 round of 3-epoch runs")
    args = parser.parse_args()
    rounds, epochs = (1, 3) if args.quick else (args.rounds, args.epochs)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    project_dir = render_project(SCRATCH / "project", SCRATCH)
    project = import_project(project_dir, ("train", "loggers.base"))
    load = os.getloadavg()[0]
    seconds = measure(project, rounds, epochs)
    print(f"machine: {machine_line()}")
    print(f"1-minute load average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"{rounds} interleaved rounds of {epochs}-epoch runs, digits, simple_cnn, batch 64\n")
    print(table(seconds))
    ratio = paired_ratio(seconds)
    verdict = "HOLDS" if ratio <= BAR else "MISSED"
    print(f"\nbar --cam-every 1 epoch <= {BAR:.2f}x without: {verdict} ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
