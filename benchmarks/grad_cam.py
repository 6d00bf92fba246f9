"""What `--cam-every 1` adds to an epoch: digits, the default model, with and without Grad-CAM.

Renders the default project and trains it in this process, in interleaved rounds of two short
runs: one without `--cam-every`, one with `--cam-every 1`. An epoch is timed from the end of one
to the end of the next, so it holds everything a run does per epoch: training, validation,
Grad-CAM with its PNG and TensorBoard grid, the checkpoint. Each run's first epoch is left out
(warm-up). Prints a table of epoch times and Grad-CAM's own time per epoch, and the bar: an
epoch at most 10 % longer with Grad-CAM.

    .venv/bin/python benchmarks/grad_cam.py 2>/dev/null   # 5 rounds of 6-epoch runs
    .venv/bin/python benchmarks/grad_cam.py --quick       # smoke run
"""

import argparse
import itertools
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field

from rendered_project import ROOT, import_project, machine_line, render_project

SCRATCH = ROOT / ".scratch" / "benchmarks" / "grad_cam"
VARIANTS = {"without --cam-every": [], "--cam-every 1": ["--cam-every", "1"]}
BAR = 1.10  # Grad-CAM may cost at most 10 % more epoch time


@dataclass
class Run:
    epochs: list[float]  # seconds of each epoch but the first
    cam_seconds: list[float]  # seconds of each of those epochs' Grad-CAM, drawn and written


@dataclass
class Clock:
    """What one run's EpochClock noted: when each epoch ended, and each Grad-CAM's seconds."""

    ends: list[float] = field(default_factory=list)
    cam_seconds: list[float] = field(default_factory=list)
    validated: float = 0.0


def epoch_clock(project: dict) -> Clock:
    """A logger each run builds like its own, registered after them (the chosen features'
    loggers register when their modules load): it sees every event after the run's own
    loggers. Between validation and log_figure lie drawing Grad-CAM and writing it (the PNG, the
    TensorBoard image)."""
    project["config.extras"].load_implementations()
    clock = Clock()

    class EpochClock(project["loggers.base"].RunLogger):
        def log_validation(self, results: dict, step: int) -> None:
            clock.validated = time.perf_counter()

        def log_figure(self, figure, step: int) -> None:
            clock.cam_seconds.append(time.perf_counter() - clock.validated)

        def log_epoch(self, record: dict, step: int, model) -> None:
            clock.ends.append(time.perf_counter())

    project["loggers.base"].register_logger(EpochClock)
    return clock


def timed_run(project: dict, clock: Clock, name: str, flags: list[str], epochs: int):
    """Epoch seconds and Grad-CAM seconds of one run, its first epoch left out."""
    clock.ends.clear()
    clock.cam_seconds.clear()
    argv = ["--dataset", "digits", "--epochs", str(epochs), "--no-progress"]
    argv += ["--output-dir", str(SCRATCH / "runs"), "--name", name, *flags]
    if project["train"].main(argv) != 0:
        sys.exit(f"error: the run {name} failed")
    epochs = [later - earlier for earlier, later in itertools.pairwise(clock.ends)]
    return epochs, clock.cam_seconds[1:]


def measure(project: dict, rounds: int, epochs: int) -> dict[str, list[Run]]:
    """Per variant, each round's run; the order within a round alternates, so that neither
    variant always runs first."""
    clock = epoch_clock(project)
    runs = {variant: [] for variant in VARIANTS}
    for round_index in range(rounds):
        order = list(VARIANTS) if round_index % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            name = f"round{round_index + 1}-{'cam' if VARIANTS[variant] else 'plain'}"
            runs[variant].append(Run(*timed_run(project, clock, name, VARIANTS[variant], epochs)))
        medians = [f"{key} {statistics.median(runs[key][-1].epochs):.3f} s" for key in VARIANTS]
        print(f"round {round_index + 1}/{rounds}: {', '.join(medians)}", file=sys.stderr)
    return runs


def paired_ratio(runs: dict[str, list[Run]]) -> float:
    """Median over rounds of the with/without ratio of the round's median epoch: the two runs
    of a round saw similar background load."""
    plain, cam = runs.values()
    return statistics.median(
        statistics.median(with_cam.epochs) / statistics.median(without.epochs)
        for without, with_cam in zip(plain, cam, strict=True)
    )


def cam_share(runs: dict[str, list[Run]]) -> float:
    """Median Grad-CAM seconds over the median epoch without it: steadier than the epochs'
    ratio, as it does not carry their run-to-run spread."""
    plain, cam = runs.values()
    cam_seconds = [seconds for run in cam for seconds in run.cam_seconds]
    plain_epochs = [epoch for run in plain for epoch in run.epochs]
    return statistics.median(cam_seconds) / statistics.median(plain_epochs)


def table(runs: dict[str, list[Run]]) -> str:
    lines = [
        "| run | epochs timed | epoch s (median) | min-max | Grad-CAM s per epoch (median) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant, variant_runs in runs.items():
        epochs = [epoch for run in variant_runs for epoch in run.epochs]
        cam = [seconds for run in variant_runs for seconds in run.cam_seconds]
        cells = [
            variant,
            str(len(epochs)),
            f"{statistics.median(epochs):.3f}",
            f"{min(epochs):.3f}-{max(epochs):.3f}",
            f"{statistics.median(cam):.3f}" if cam else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved pairs of runs")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (first untimed)")
    parser.add_argument("--quick", action="store_true", help="1 round of 3-epoch runs")
    args = parser.parse_args()
    rounds, epochs = (1, 3) if args.quick else (args.rounds, args.epochs)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    project_dir = render_project(SCRATCH / "project", SCRATCH)
    project = import_project(project_dir, ("train", "config.extras", "loggers.base"))
    load = os.getloadavg()[0]
    runs = measure(project, rounds, epochs)
    print(f"machine: {machine_line()}")
    print(f"1-minute load average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"{rounds} interleaved rounds of {epochs}-epoch runs, digits, simple_cnn, batch 64\n")
    print(table(runs))
    ratio = paired_ratio(runs)
    verdict = "HOLDS" if ratio <= BAR else "MISSED"
    print(f"\nGrad-CAM's own time, as a share of an epoch without it: {cam_share(runs):.1%}")
    print(f"bar --cam-every 1 epoch <= {BAR:.2f}x without: {verdict} ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
