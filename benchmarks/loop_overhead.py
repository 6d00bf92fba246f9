"""Training-loop overhead: generated `train_one_epoch` vs a bare PyTorch loop vs Lightning.

Renders the all-options project, builds each case's data, model and optimizer with the generated
code (`training.fit.build_training`, as a real run does), then times one training epoch of each
loop in interleaved rounds and prints one table of median samples/s: with the generated
DataLoader, and with one epoch's batches collated once (the loops' own cost, without the data
pipeline). Then it times each piece of host work the generated step adds to a bare step, in
microseconds.

    .venv/bin/python benchmarks/loop_overhead.py 2>/dev/null   # full run; bars go to stderr
    .venv/bin/python benchmarks/loop_overhead.py --quick       # smoke run
"""

import argparse
import contextlib
import copy
import logging
import os
import platform
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from rendered_project import ROOT, build_training, import_project, render_project
from torch import nn
from tqdm import tqdm

SCRATCH = ROOT / ".scratch" / "benchmarks"
PROJECT_MODULES = ("config.extras", "config.parser", "loggers", "training.loop")
PROJECT_MODULES += ("training.optimisation", "runs.runtime", "training.fit")

# Each case is the generated project's own command line; 640 fake samples leave 512 for training.
CASES = {
    "simple_cnn": "--dataset digits --model simple_cnn --batch-size 64".split(),
    "resnet18": "--dataset fake --fake-samples 640 --model resnet18 --batch-size 64".split(),
}
LOOPS = ("generated", "bare", "lightning")
GENERATED_TO_BARE_BAR = 0.97
CACHED_PASSES = 5  # --cached-batches: passes over one epoch's batches per timed epoch


@dataclass
class Case:
    """One model and its data, with a freshly initialised copy of the model for each loop."""

    name: str
    data: str  # "loader" or "cached"
    project: dict
    config: object  # the generated Config
    training: object  # the generated trainer's Training
    samples_per_epoch: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {loop: [] for loop in LOOPS})
    lightning_fit_seconds: list[float] = field(default_factory=list)


class KeptOrder:
    def set_epoch(self, epoch: int) -> None:
        """Cached batches keep the order they were collated in."""


class CachedBatches(list):
    """Batches collated once, standing in for the DataLoader: the same tensors for every loop."""

    sampler = KeptOrder()


def build_case(name: str, project: dict, epochs: int, cached: bool) -> Case:
    """Data, model, optimizer and schedule exactly as the generated trainer builds them."""
    run_dir = SCRATCH / "runs"
    argv = [*CASES[name], "--device", "cpu", "--epochs", str(epochs), "--output-dir", str(run_dir)]
    config, training, _ = build_training(project, argv)
    if cached:
        training.train_loader = CachedBatches(list(training.train_loader) * CACHED_PASSES)
    batches = len(training.train_loader)  # the training loader drops the last partial batch
    data = "cached" if cached else "loader"
    return Case(name, data, project, config, training, batches * config.data.batch_size)


def generated_loop(case: Case) -> Callable[[], None]:
    """The generated epoch with what a real run passes: its loggers and a progress bar."""
    engine, training = case.project["training.loop"], case.training
    run_dir = SCRATCH / "runs" / f"generated-{case.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    case.project["config.extras"].load_implementations()  # registers the chosen loggers
    loggers = case.project["loggers"].build_loggers(case.config, run_dir, training.spec, None)
    cpu = case.project["runs.runtime"].Runtime(torch.device("cpu"))

    def run_epoch() -> None:
        training.train_loader.sampler.set_epoch(training.progress.epoch)
        engine.train_one_epoch(
            training.model,
            training.train_loader,
            training,
            cpu,
            case.config.run.log_every,
            loggers.log_step,
            show_progress=True,  # a run on a terminal shows its bar unless --no-progress
        )
        training.progress.epoch += 1

    return run_epoch


def bare_loop(case: Case) -> Callable[[], None]:
    """The floor: to(device), forward, loss, backward, step, zero_grad; nothing else."""
    model = fresh_model(case)
    optimizer = case.project["training.optimisation"].build_optimizer(model, case.config.optim)
    loss_fn = nn.CrossEntropyLoss()
    loader, device = case.training.train_loader, torch.device("cpu")

    def run_epoch() -> None:
        model.train()
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    return run_epoch


class Classifier(LightningModule):
    """The same model, optimizer and per-step schedule, written the way Lightning's docs show."""

    def __init__(self, model: nn.Module, optimizer, scheduler) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = optimizer
        self.scheduler = scheduler

    def training_step(self, batch, batch_index):
        images, targets = batch
        loss = self.loss_fn(self.model(images), targets)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        schedule = {"scheduler": self.scheduler, "interval": "step"}
        return {"optimizer": self.optimizer, "lr_scheduler": schedule}


class EpochTimer(Callback):
    """Times the training epoch alone, without Trainer.fit's set-up and tear-down."""

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds = time.perf_counter() - self.started


def lightning_loop(case: Case) -> Callable[[], float]:
    """A new one-epoch Trainer per call, with Lightning's default logger and progress bar.

    The bar is named because Lightning picks RichProgressBar when `rich` happens to be installed
    (cookiecutter brings it here); `pip install lightning` alone gives TQDMProgressBar, which
    is also the bar library of the generated loop.
    """
    model = fresh_model(case)
    optim = case.project["training.optimisation"]
    optimizer = optim.build_optimizer(model, case.config.optim)
    scheduler = optim.build_scheduler(
        optimizer, case.config.optim, len(case.training.train_loader), case.config.run.epochs
    )
    module = Classifier(model, optimizer, scheduler)

    def run_epoch() -> float:
        timer = EpochTimer()
        trainer = Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            enable_checkpointing=False,
            log_every_n_steps=case.config.run.log_every,  # the generated --log-every (default 20)
            default_root_dir=SCRATCH / "lightning",
            enable_model_summary=False,  # printed before the epoch, outside the timing
            callbacks=[TQDMProgressBar(), timer],
        )
        # Lightning's bar writes to stdout; send it to stderr with the other bar (same cost).
        with contextlib.redirect_stdout(sys.stderr):
            trainer.fit(module, train_dataloaders=case.training.train_loader)
        return timer.seconds

    return run_epoch


def fresh_model(case: Case) -> nn.Module:
    """Another copy of the generated model with the same initial weights."""
    return copy.deepcopy(case.training.model)


def time_loop(run_epoch: Callable) -> tuple[float, float]:
    """(epoch seconds, wall seconds of the call); they differ only for Lightning."""
    started = time.perf_counter()
    epoch_seconds = run_epoch()
    wall = time.perf_counter() - started
    return (epoch_seconds if epoch_seconds is not None else wall), wall


def measure(case: Case, repeats: int) -> None:
    """One warm-up epoch per loop, then rounds that interleave the loops.

    Interleaving spreads background load on the shared cores over all loops, and rotating the
    order within a round keeps any loop from always following the same one.
    """
    loops = {
        "generated": generated_loop(case),
        "bare": bare_loop(case),
        "lightning": lightning_loop(case),
    }
    for run_epoch in loops.values():
        time_loop(run_epoch)
    for round_index in range(repeats):
        order = LOOPS[round_index % 3 :] + LOOPS[: round_index % 3]
        for loop in order:
            epoch_seconds, wall = time_loop(loops[loop])
            case.seconds[loop].append(epoch_seconds)
            if loop == "lightning":
                case.lightning_fit_seconds.append(wall)
        times = ", ".join(f"{loop} {case.seconds[loop][-1]:.2f} s" for loop in LOOPS)
        label = f"{case.name} ({case.data})"
        print(f"{label} round {round_index + 1}/{repeats}: {times}", file=sys.stderr)


def samples_per_second(case: Case, loop: str) -> list[float]:
    return [case.samples_per_epoch / seconds for seconds in case.seconds[loop]]


def paired_ratio(case: Case, loop: str, reference: str) -> float:
    """Median over rounds of loop's speed relative to reference's in the same round.

    The loops of one round run back to back, so each ratio compares epochs that saw similar
    background load; a ratio of the two medians would not.
    """
    pairs = zip(case.seconds[reference], case.seconds[loop], strict=True)
    return statistics.median(reference_s / loop_s for reference_s, loop_s in pairs)


def table(cases: list[Case]) -> str:
    header = "| model | data | loop | samples/s (median) | min-max | ratio to bare |"
    lines = [header, "| --- | --- | --- | ---: | ---: | ---: |"]
    for case in cases:
        for loop in LOOPS:
            rates = samples_per_second(case, loop)
            cells = [
                case.name,
                case.data,
                loop,
                f"{statistics.median(rates):.0f}",
                f"{min(rates):.0f}-{max(rates):.0f}",
                f"{paired_ratio(case, loop, 'bare'):.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(case: Case) -> list[str]:
    """The product's bars, judged on the small CNN."""
    to_bare = paired_ratio(case, "generated", "bare")
    to_lightning = paired_ratio(case, "generated", "lightning")
    label = f"{case.name}, {case.data}"
    return [
        f"bar generated >= {GENERATED_TO_BARE_BAR}x bare ({label}): "
        f"{'HOLDS' if to_bare >= GENERATED_TO_BARE_BAR else 'MISSED'} ({to_bare:.3f}x)",
        f"bar generated >= Lightning ({label}): "
        f"{'HOLDS' if to_lightning >= 1 else 'MISSED'} ({to_lightning:.3f}x)",
    ]


def lightning_fit_note(cases: list[Case]) -> str:
    parts = [
        f"{case.name} ({case.data}) {statistics.median(case.lightning_fit_seconds):.2f} s "
        f"(epoch alone {statistics.median(case.seconds['lightning']):.2f} s)"
        for case in cases
    ]
    return "Lightning Trainer.fit wall time per one-epoch fit, median: " + "; ".join(parts)


def quiet_lightning() -> None:
    """Keep Lightning's set-up chatter (summaries, hints) out of the output; the bar stays."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*(num_workers|logging interval).*")


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def machine_line() -> str:
    cpu = cpu_model()
    return (
        f"{os.cpu_count()} cores, {cpu}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def per_call_microseconds(call: Callable[[], object], calls: int = 2000) -> float:
    call()  # warm-up
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def step_extras(case: Case) -> dict[str, float]:
    """Microseconds per optimizer step of each piece of host work the generated step adds to
    a bare one, each timed alone on the case's real tensors."""
    engine, training = case.project["training.loop"], case.training
    runtime = case.project["runs.runtime"].Runtime(torch.device("cpu"))
    optimisation = copy.deepcopy(training.optimisation)
    task, device, layout = training.task, runtime.device, training.memory_format
    images, targets = training.train_loader[0]
    with torch.no_grad():
        logits = training.model(images)
    loss = task.criterion(logits, targets)
    running = task.running_sums(None, device)
    batches = len(training.train_loader)
    log_every = case.config.run.log_every

    def contexts() -> None:
        with runtime.gradient_sync(training.model, enabled=True):
            with optimisation.precision.autocast():
                pass

    with open(os.devnull, "w") as devnull:
        bar_items = tqdm(range(100_000), file=devnull, mininterval=0.1)
        bar = iter(bar_items)
        extras = {
            "progress bar (tqdm, per batch)": per_call_microseconds(lambda: next(bar)),
            "batch to the device (to_device, images and targets)": per_call_microseconds(
                lambda: (
                    engine.to_device(images, device, layout),
                    engine.to_device(targets, device),
                )
            ),
            "detached outputs (forward_backward)": per_call_microseconds(
                lambda: engine.detached(logits)
            ),
            "running sums on the device (task.running_sums(...).add)": per_call_microseconds(
                lambda: running.add(loss, logits, targets)
            ),
            "accumulation group size, update test": per_call_microseconds(
                lambda: engine.micro_batches_in_group(7, batches, 1)
            ),
            "gradient_sync + autocast contexts (no-ops here)": per_call_microseconds(contexts),
            "LR schedule (LambdaLR.step)": per_call_microseconds(optimisation.scheduler.step),
            "stop-request check": per_call_microseconds(lambda: runtime.any_rank(False)),
            f"read running means + bar text, every {log_every} steps": per_call_microseconds(
                lambda: (
                    engine.read_running_means(running.totals(), training),
                    bar_items.set_postfix({"loss": "0.1234", "lr": "1.00e-03"}, refresh=False),
                )
            )
            / log_every,
        }
        bar_items.close()
    return extras


def breakdown_table(case: Case) -> str:
    """Host work per step: the pieces the generated step adds, against the measured gap."""
    steps = case.samples_per_epoch / case.config.data.batch_size
    bare = statistics.median(case.seconds["bare"]) / steps * 1e6
    generated = statistics.median(case.seconds["generated"]) / steps * 1e6
    extras = step_extras(case)
    lines = [f"per-step host work, {case.name} ({case.data}), microseconds per optimizer step:"]
    lines += ["| part | us/step |", "| --- | ---: |"]
    lines += [f"| {part} | {value:.1f} |" for part, value in extras.items()]
    lines.append(f"| sum of the parts | {sum(extras.values()):.1f} |")
    lines.append(f"| measured step: bare / generated (median) | {bare:.0f} / {generated:.0f} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per model")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds")
    parser.add_argument(
        "--cached-batches",
        action="store_true",
        help=f"only the cached mode: one epoch collated once, {CACHED_PASSES} passes over it per "
        "timed epoch (the loops' cost without the data pipeline's time and noise)",
    )
    parser.add_argument(
        "--models", nargs="+", choices=tuple(CASES), default=list(CASES), help="cases to run"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    quiet_lightning()
    shutil.rmtree(SCRATCH / "runs", ignore_errors=True)
    shutil.rmtree(SCRATCH / "lightning", ignore_errors=True)
    project = import_project(render_project(SCRATCH / "project", SCRATCH), PROJECT_MODULES)
    load_before = os.getloadavg()[0]
    cases = []
    modes = (True,) if args.cached_batches else (False, True)
    for name in args.models:
        for cached in modes:
            passes = CACHED_PASSES if cached else 1
            case = build_case(name, project, (args.repeats + 1) * passes, cached)
            measure(case, args.repeats)
            cases.append(case)
    print()
    print(f"machine: {machine_line()}")
    load_after = os.getloadavg()[0]
    print(f"1-minute load average: {load_before:.2f} at the start, {load_after:.2f} at the end")
    print(f"{args.repeats} interleaved rounds after a warm-up epoch per loop; fp32, batch 64")
    print("data: loader = the generated DataLoader (num_workers 0); cached = one epoch's batches")
    print(f"collated once, {CACHED_PASSES} passes per timed epoch")
    print(table(cases))
    print("ratio to bare: median over rounds of the round's bare epoch time / this loop's")
    print(lightning_fit_note(cases))
    for case in cases:
        if case.name == "simple_cnn":
            print("\n".join(verdict(case)))
    cached_cnn = [case for case in cases if case.name == "simple_cnn" and case.data == "cached"]
    if cached_cnn:
        print()
        print(breakdown_table(cached_cnn[0]))


if __name__ == "__main__":
    main()
