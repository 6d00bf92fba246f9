"""A one-call GPU check: every code-shaping combination trains on CUDA, the generated projects'
GPU tests pass, and the generated training loop's throughput is measured against a bare loop.

Stage 1 renders all 64 combinations and trains each for two short epochs on the GPU, each in a
fresh process, with the switches it includes: float16 --amp (which brings in the GradScaler),
--dp, torchrun over nccl, --export-onnx. Stage 2 runs `pytest -m gpu` in the all-options and the
minimal project. Stage 3 prints samples/s of the generated `train_one_epoch` and of a bare
PyTorch loop on batches cached on the GPU: float32, --amp (bfloat16), --channels-last,
--compile and all three, each loop given the same treatment.

    python benchmarks/gpu_check.py              # the whole check (`make gpu-check`)
    python benchmarks/gpu_check.py --quick      # smoke run: 4 combinations, one table row
    python benchmarks/gpu_check.py --allow-cpu  # no GPU here: the smoke run on the CPU

Without CUDA (and without --allow-cpu) it says so in one line and exits 1, rendering nothing.
"""

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rendered_project import PACKAGE, ROOT, import_project
from torch import nn

sys.path.insert(0, str(ROOT / "tests"))
from test_project_suites import REPRESENTATIVE  # noqa: E402  (tests/ is not a package)

from options import (  # noqa: E402
    code_shaping_combinations,
    combination_id,
    uses_ddp,
    uses_dp,
    uses_tensorboard,
    uses_wandb,
)

ALL_OPTIONS, MINIMAL = REPRESENTATIVE
# The quick run's four cover torchrun (ddp and both), --dp, AMP, ONNX and every logger.
QUICK_COMBINATIONS = [
    ALL_OPTIONS,
    MINIMAL,
    {"logger": "wandb", "mixed_precision": "yes", "multi_gpu": "dp", "onnx_export": "no"},
    {"logger": "tensorboard", "mixed_precision": "no", "multi_gpu": "ddp", "onnx_export": "yes"},
]
# The CPU dry run trains the first two: together still every launcher, logger and switch, and
# the two projects whose GPU tests stage 2 runs.
CPU_COMBINATIONS = QUICK_COMBINATIONS[:2]
RUN_NAME = "matrix"
EPOCHS = 2
# 640 fake 32x32 images on the GPU (8 updates of 64 per epoch). The CPU dry run uses the
# template suite's 160 8x8 images: autocast is emulated, and slow, on most CPUs.
GPU_DATA = "--dataset fake --fake-samples 640 --image-size 32 --batch-size 64".split()
CPU_DATA = "--dataset fake --fake-samples 160 --image-size 8 --batch-size 32".split()
TRAIN_TIMEOUT = 180
TEST_TIMEOUT = 300
PROJECT_MODULES = ("config.extras", "config.parser", "training.loop", "training.optimisation")
PROJECT_MODULES += ("runs.runtime", "training.fit")
BENCH_MODELS = ("simple_cnn", "resnet18")
BENCH_TRAIN_BATCHES = 8  # full batches collated once and cached on the device
QUIET = logging.getLogger("gpu-check")
QUIET.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Variant:
    """How a throughput case runs; the generated project gets it as flags, the bare loop
    applies it by hand."""

    name: str
    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    def flags(self) -> list[str]:
        flags = ["--amp", "--amp-dtype", "bfloat16"] if self.amp else []
        if self.channels_last:
            flags.append("--channels-last")
        if self.compile:
            flags.append("--compile")
        return flags

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


FP32 = Variant("fp32")
VARIANTS = (
    FP32,
    Variant("amp bfloat16", amp=True),
    Variant("channels-last", channels_last=True),
    Variant("compile", compile=True),
    Variant("amp + channels-last + compile", amp=True, channels_last=True, compile=True),
)


@dataclass(frozen=True)
class Bench:
    """The throughput stage's size: fake images, batch, passes over the cached batches per
    timed epoch, timed epochs per loop."""

    image_size: int
    batch_size: int
    passes: int
    rounds: int


FULL_BENCH = Bench(image_size=32, batch_size=256, passes=12, rounds=3)
QUICK_BENCH = Bench(image_size=32, batch_size=256, passes=2, rounds=1)
CPU_BENCH = Bench(image_size=8, batch_size=32, passes=1, rounds=1)


@dataclass(frozen=True)
class Plan:
    device: torch.device
    scratch: Path
    combinations: list[dict]
    data: list[str]  # the matrix runs' data flags
    models: tuple[str, ...]
    variants: tuple[Variant, ...]
    bench: Bench
    jobs: int  # matrix runs at a time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 4 combinations, one table row"
    )
    parser.add_argument(
        "--allow-cpu",
        action="store_true",
        help="without CUDA, run the smoke run on the CPU instead of refusing (a dry run of the "
        "check itself)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=ROOT / ".scratch" / "gpu-check",
        help="folder for the renders, runs and logs (emptied first)",
    )
    return parser.parse_args()


def no_cuda_line() -> str:
    build = torch.version.cuda or "none"
    return (
        f"gpu-check: no CUDA GPU visible here (torch {torch.__version__}, CUDA build {build}): "
        "run it on a machine with a GPU"
    )


def make_plan(args: argparse.Namespace, device: torch.device) -> Plan:
    on_cpu = device.type == "cpu"
    quick = args.quick or on_cpu
    return Plan(
        device=device,
        scratch=args.scratch.resolve(),
        combinations=(
            CPU_COMBINATIONS
            if on_cpu
            else QUICK_COMBINATIONS
            if quick
            else code_shaping_combinations()
        ),
        data=CPU_DATA if on_cpu else GPU_DATA,
        models=BENCH_MODELS[:1] if quick else BENCH_MODELS,
        variants=(FP32,) if quick else VARIANTS,
        bench=CPU_BENCH if on_cpu else QUICK_BENCH if quick else FULL_BENCH,
        jobs=max(2, (os.cpu_count() or 2) // 2),
    )


def threads_per_job(plan: Plan) -> int:
    return max(1, (os.cpu_count() or 2) // plan.jobs)


def project_folder(plan: Plan, combo: dict) -> Path:
    return plan.scratch / "projects" / combination_id(combo) / PACKAGE


def scratch_environment(plan: Plan) -> dict:
    """cookiecutter's rendered hook scripts, torch's and wandb's files stay in the scratch."""
    return {
        **os.environ,
        "TMPDIR": str(plan.scratch / "tmp"),
        "XDG_CACHE_HOME": str(plan.scratch / "cache"),
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
    }


def project_environment(plan: Plan, project: Path, threads: int) -> dict:
    """The project's src/ first on PYTHONPATH, ahead of what the caller put there (a machine
    may provide packages that way)."""
    paths = [str(project / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = scratch_environment(plan)
    env.update(PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS=str(threads))
    return env


def run_logged(command: list[str], cwd: Path, env: dict, log_path: Path, timeout: float):
    """Run `command` with its output in `log_path`; its exit code, or None when it had to be
    killed at `timeout` (with every process it started: torchrun's workers too)."""
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None


# Stage 1: the matrix


@dataclass
class MatrixResult:
    combo: dict
    seconds: float
    problems: list[str]


def render(plan: Plan, combo: dict) -> Path:
    """Render `combo` with cookiecutter, as a user would; return the project folder."""
    answers = [f"{name}={value}" for name, value in combo.items()]
    output = project_folder(plan, combo).parent
    command = [sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(output)]
    subprocess.run(
        [*command, "init_git=no", *answers],
        check=True,
        capture_output=True,
        text=True,
        env=scratch_environment(plan),
    )
    return output / PACKAGE


def switches(combo: dict) -> list[str]:
    """The CPU matrix test's switches, with float16 AMP: on CUDA it adds the GradScaler."""
    flags = ["--amp", "--amp-dtype", "float16"] if combo["mixed_precision"] == "yes" else []
    if uses_dp(combo) and not uses_ddp(combo):
        flags.append("--dp")
    if combo["onnx_export"] == "yes":
        flags.append("--export-onnx")
    return flags


def train_command(plan: Plan, combo: dict, output_dir: Path) -> list[str]:
    launcher = [sys.executable]
    if uses_ddp(combo):
        # One process: NCCL refuses two ranks on one GPU.
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    run = [*plan.data, "--epochs", str(EPOCHS), "--no-progress", "--name", RUN_NAME]
    run += ["--device", plan.device.type, "--output-dir", str(output_dir)]
    return [*launcher, "-m", f"{PACKAGE}.train", *run, *switches(combo)]


def train_combination(plan: Plan, combo: dict) -> MatrixResult:
    started = time.perf_counter()
    problems = render_and_train(plan, combo)
    return MatrixResult(combo, time.perf_counter() - started, problems)


def render_and_train(plan: Plan, combo: dict) -> list[str]:
    """What went wrong rendering and training `combo`: nothing, when it all worked."""
    try:
        project = render(plan, combo)
    except subprocess.CalledProcessError as error:
        return [f"render failed: {error.stderr.strip()[-500:]}"]
    name = combination_id(combo)
    log_path = plan.scratch / "logs" / f"{name}.log"
    output_dir = plan.scratch / "runs" / name
    command = train_command(plan, combo, output_dir)
    env = project_environment(plan, project, threads_per_job(plan))
    exit_code = run_logged(command, project, env, log_path, TRAIN_TIMEOUT)
    if exit_code is None:
        return [f"still running after {TRAIN_TIMEOUT} s, killed; log: {log_path}"]
    if exit_code != 0:
        return [f"exit code {exit_code}; log: {log_path}"]
    return run_problems(combo, plan.device, log_path.read_text(), output_dir / RUN_NAME)


def expected_log_lines(combo: dict, device: torch.device) -> list[str]:
    lines = [f"training on {device}, world size 1"]
    if combo["mixed_precision"] == "yes":
        lines.append("mixed precision: autocast float16 with GradScaler")
    if uses_ddp(combo):
        lines.append("parameters identical on all 1 ranks")  # logged by the DDP runtime alone
    elif uses_dp(combo):
        lines.append(data_parallel_line(device))
    if combo["onnx_export"] == "yes":
        lines.append("onnxruntime max |diff|")
    return lines


def data_parallel_line(device: torch.device) -> str:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    return f"DataParallel over {gpus} GPUs" if gpus >= 2 else "--dp does nothing here"


def expected_files(combo: dict) -> list[str]:
    files = ["last.pt", "best.pt", "metrics.jsonl"]
    if uses_tensorboard(combo):
        files.append("tensorboard/events.out.tfevents.*")
    if uses_wandb(combo):
        files.append("wandb/offline-run-*/run-*.wandb")
    if combo["onnx_export"] == "yes":
        files.append("model.onnx")
    return files


def run_problems(combo: dict, device: torch.device, log: str, run_dir: Path) -> list[str]:
    """What the CPU matrix test asserts, held against a finished run on `device`."""
    problems = [
        f"log lacks {line!r}" for line in expected_log_lines(combo, device) if line not in log
    ]
    if "Traceback" in log or "Logging error" in log:
        problems.append("a traceback in the log")
    problems += [
        f"no {name} in {run_dir}" for name in expected_files(combo) if not any(run_dir.glob(name))
    ]
    if problems:
        return problems
    metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in metrics]
    if epochs != list(range(1, EPOCHS + 1)):
        problems.append(f"metrics.jsonl has epochs {epochs}")
    weights = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]
    if any(key.startswith("module.") for key in weights):
        problems.append("last.pt holds the multi-GPU wrapper's weights, not the model's")
    return problems


def matrix_row(result: MatrixResult) -> str:
    outcome = "FAILED: " + "; ".join(result.problems) if result.problems else "ok"
    return f"{combination_id(result.combo):<72} {result.seconds:6.1f} s  {outcome}"


def stage_matrix(plan: Plan) -> bool:
    count, device = len(plan.combinations), plan.device.type
    print(f"{count} combinations, {EPOCHS} epochs each on {device}, {plan.jobs} at a time")
    results = []
    with ThreadPoolExecutor(plan.jobs) as pool:
        futures = [pool.submit(train_combination, plan, combo) for combo in plan.combinations]
        for future in as_completed(futures):
            results.append(future.result())
            print(matrix_row(results[-1]), flush=True)
    trained = sum(not result.problems for result in results)
    print(f"gpu matrix: {trained}/{count} trained on {device}")
    return trained == count


# Stage 2: the generated projects' GPU tests


@dataclass
class SuiteResult:
    combo: dict
    exit_code: int | None
    output: list[str]

    def summary(self) -> str:
        if self.exit_code is None:
            return f"still running after {TEST_TIMEOUT} s, killed"
        return self.output[-1] if self.output else f"no output, exit code {self.exit_code}"

    def passed_count(self) -> int:
        found = re.search(r"(\d+) passed", self.summary())
        return int(found.group(1)) if found else 0


def run_gpu_tests(plan: Plan, combo: dict) -> SuiteResult:
    project = project_folder(plan, combo)
    if not project.is_dir():
        return SuiteResult(combo, 1, ["not rendered: see stage 1"])
    log_path = plan.scratch / "logs" / f"pytest-{combination_id(combo)}.log"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"]
    threads = max(1, (os.cpu_count() or 2) // len(REPRESENTATIVE))
    env = project_environment(plan, project, threads)
    exit_code = run_logged(command, project, env, log_path, TEST_TIMEOUT)
    return SuiteResult(combo, exit_code, log_path.read_text().strip().splitlines())


def suite_passed(result: SuiteResult, device: torch.device) -> bool:
    """No failure; on CUDA the all-options project must run some GPU tests (exit code 5: pytest
    selected none)."""
    if result.combo == ALL_OPTIONS and device.type == "cuda":
        return result.exit_code == 0 and result.passed_count() > 0
    return result.exit_code in (0, 5)


def stage_gpu_tests(plan: Plan) -> bool:
    with ThreadPoolExecutor(len(REPRESENTATIVE)) as pool:
        results = list(pool.map(lambda combo: run_gpu_tests(plan, combo), REPRESENTATIVE))
    verdicts = []
    for result in results:
        passed = suite_passed(result, plan.device)
        verdicts.append(passed)
        print(f"{combination_id(result.combo)}: {result.summary()}{'' if passed else '  FAILED'}")
        for line in result.output:
            if line.startswith("SKIPPED"):
                print(f"  {line}")
    return all(verdicts)


# Stage 3: throughput


class Skipped(Exception):
    """A variant the rendered project cannot run, with the reason."""


@dataclass
class Reference:
    """One model's float32 build: the bare loop's starting weights and the cached batches."""

    config: object  # the generated Config
    model: nn.Module
    batches: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Row:
    model: str
    variant: Variant
    samples: int = 0  # per timed epoch
    warmup: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    skipped: str = ""
    error: str = ""


def bench_argv(plan: Plan, model: str, variant: Variant, epochs: int) -> list[str]:
    bench = plan.bench
    # A fifth of the fake samples is held out for validation: the rest makes whole batches.
    samples = bench.batch_size * BENCH_TRAIN_BATCHES * 5 // 4
    data = ["--dataset", "fake", "--fake-samples", str(samples), "--model", model]
    data += ["--image-size", str(bench.image_size), "--batch-size", str(bench.batch_size)]
    run = ["--device", str(plan.device), "--epochs", str(epochs), "--no-progress"]
    return [*data, *run, *variant.flags()]


def parse_config(project: dict, argv: list[str]):
    """The generated Config for `argv`; Skipped, with its one-line reason, if it refuses them."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return project["config.parser"].parse_config(argv)
    except SystemExit:
        raise Skipped(f"the rendered project refuses it: {errors.getvalue().strip()}") from None


def build_training(project: dict, argv: list[str], device: torch.device):
    """(config, Training) for `argv`, built by the generated trainer on `device` as a run
    builds them."""
    config = parse_config(project, argv)
    project["runs.runtime"].seed_everything(config.data.seed, config.run.deterministic)
    runtime = project["runs.runtime"].Runtime(device)
    return config, project["training.fit"].build_training(config, runtime, QUIET)


def is_compiled(model: nn.Module) -> bool:
    """Compiled in place (nn.Module.compile) or wrapped by torch.compile."""
    return getattr(model, "_compiled_call_impl", None) is not None or hasattr(model, "_orig_mod")


def is_channels_last(model: nn.Module) -> bool:
    kernels = [parameter for parameter in model.parameters() if parameter.ndim == 4]
    return all(kernel.is_contiguous(memory_format=torch.channels_last) for kernel in kernels)


def check_applied(model: nn.Module, variant: Variant) -> None:
    """A flag the project accepts but ignores would time the wrong thing."""
    if variant.compile and not is_compiled(model):
        raise Skipped("--compile is accepted, but the generated model is not compiled")
    if variant.channels_last and not is_channels_last(model):
        raise Skipped("--channels-last is accepted, but the generated model's weights are not")


def build_reference(project: dict, plan: Plan, model: str) -> Reference:
    config, training = build_training(project, bench_argv(plan, model, FP32, 1), plan.device)
    size = plan.bench.batch_size
    batches = [
        (images.to(plan.device), targets.to(plan.device))
        for images, targets in training.train_loader
        if len(targets) == size  # one shape for every step, so nothing recompiles
    ]
    return Reference(config, training.model, batches)


def epoch_batches(reference: Reference, variant: Variant, passes: int) -> list:
    """`passes` over the cached batches, in the variant's memory layout; both loops get the
    same tensors."""
    layout = variant.memory_format
    batches = [
        (images.contiguous(memory_format=layout), targets) for images, targets in reference.batches
    ]
    return batches * passes


def drop_step_values(values: dict, step: int) -> None:
    """A --no-progress run's step logger minus its writes: the loop's own cost is timed."""


def generated_loop(project: dict, config, training, batches: list, device: torch.device):
    """The generated epoch, called as training.fit calls it."""
    engine = project["training.loop"]
    runtime = project["runs.runtime"].Runtime(device)

    def run_epoch() -> None:
        engine.train_one_epoch(
            training.model,
            batches,
            training,
            runtime,
            config.run.log_every,
            drop_step_values,
            show_progress=False,
        )
        training.progress.epoch += 1

    return run_epoch


def bare_loop(project: dict, reference: Reference, variant: Variant, batches: list, device):
    """The floor: to(device), forward, loss, backward, step, zero_grad; with the variant's
    autocast, memory layout and torch.compile."""
    model = copy.deepcopy(reference.model).to(memory_format=variant.memory_format)
    optimizer = project["training.optimisation"].build_optimizer(model, reference.config.optim)
    forward = torch.compile(model) if variant.compile else model
    loss_fn = nn.CrossEntropyLoss()

    def run_epoch() -> None:
        model.train()
        for images, targets in batches:
            images, targets = images.to(device, non_blocking=True), targets.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.amp):
                loss = loss_fn(forward(images), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    return run_epoch


def timed(run_epoch: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def time_interleaved(loops: dict[str, Callable[[], None]], rounds: int, device: torch.device):
    """(warm-up seconds, timed seconds) per loop: one warm-up epoch each (where compilation
    happens), then rounds that alternate which loop goes first."""
    warmup = {name: timed(loop, device) for name, loop in loops.items()}
    seconds = {name: [] for name in loops}
    names = list(loops)
    for round_index in range(rounds):
        for name in names[round_index % 2 :] + names[: round_index % 2]:
            seconds[name].append(timed(loops[name], device))
    return warmup, seconds


def measure(project: dict, plan: Plan, reference: Reference, row: Row) -> None:
    # Each variant compiles from scratch, as a run would, and no earlier variant's graphs count
    # against Dynamo's recompile limit.
    torch.compiler.reset()
    passes = plan.bench.passes
    epochs = (plan.bench.rounds + 1) * passes  # the LR schedule spans every timed step
    config, training = build_training(
        project, bench_argv(plan, row.model, row.variant, epochs), plan.device
    )
    check_applied(training.model, row.variant)
    batches = epoch_batches(reference, row.variant, passes)
    loops = {
        "generated": generated_loop(project, config, training, batches, plan.device),
        "bare": bare_loop(project, reference, row.variant, batches, plan.device),
    }
    row.samples = len(batches) * plan.bench.batch_size
    row.warmup, row.seconds = time_interleaved(loops, plan.bench.rounds, plan.device)


def paired_ratio(row: Row) -> float:
    """Median over rounds of the generated loop's speed relative to the bare loop's."""
    pairs = zip(row.seconds["bare"], row.seconds["generated"], strict=True)
    return statistics.median(bare / generated for bare, generated in pairs)


def compile_seconds(row: Row) -> str:
    """Each loop's warm-up epoch beyond a timed epoch: its compilation."""
    if not row.variant.compile:
        return ""
    extra = [
        max(0.0, row.warmup[loop] - statistics.median(row.seconds[loop]))
        for loop in ("generated", "bare")
    ]
    return " / ".join(f"{seconds:.1f}" for seconds in extra)


def throughput_table(rows: list[Row]) -> str:
    lines = [
        "| model | variant | generated samples/s | bare samples/s | generated / bare "
        "| compile s (generated / bare) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cells = [row.model, row.variant.name]
        if row.skipped or row.error:
            cells += ["skipped" if row.skipped else "FAILED", "", "", ""]
        else:
            rates = [
                statistics.median(row.samples / seconds for seconds in row.seconds[loop])
                for loop in ("generated", "bare")
            ]
            cells += [f"{rate:.0f}" for rate in rates]
            cells += [f"{paired_ratio(row):.3f}", compile_seconds(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        name = f"CPU, {os.cpu_count()} cores"
    return f"{name}, torch {torch.__version__}"


def measure_variants(project: dict, plan: Plan) -> list[Row]:
    rows = []
    for model in plan.models:
        reference = build_reference(project, plan, model)
        for variant in plan.variants:
            row = Row(model, variant)
            try:
                measure(project, plan, reference, row)
            except Skipped as reason:
                row.skipped = str(reason)
            except Exception as error:  # the other rows are still worth the device time
                traceback.print_exc()
                row.error = f"{type(error).__name__}: {error}"
            rows.append(row)
            print(f"measured {model}, {variant.name}", flush=True)
    return rows


def report_throughput(plan: Plan, rows: list[Row]) -> None:
    bench = plan.bench
    print(
        f"\n{device_line(plan.device)}; fake {bench.image_size}px images, batch {bench.batch_size}"
    )
    print(
        f"per loop: a warm-up epoch, then {bench.rounds} timed; an epoch is {bench.passes} "
        f"pass(es) over {BENCH_TRAIN_BATCHES} batches cached on the device"
    )
    print(throughput_table(rows))
    print("generated / bare: median over rounds of the bare epoch's time / the generated one's")
    print(
        "compile s: the warm-up epoch's time beyond a timed one; the generated loop warms up "
        "first, the bare one may reuse what it compiled (Dynamo and Inductor caches)"
    )
    for row in rows:
        if row.skipped or row.error:
            outcome = f"skipped: {row.skipped}" if row.skipped else f"FAILED: {row.error}"
            print(f"{row.model}, {row.variant.name} {outcome}")


def stage_throughput(plan: Plan) -> bool:
    project_dir = project_folder(plan, ALL_OPTIONS)
    if not project_dir.is_dir():
        print("the all-options project was not rendered: see stage 1")
        return False
    project = import_project(project_dir, PROJECT_MODULES)
    project["config.extras"].load_implementations()  # registers --amp's precision
    rows = measure_variants(project, plan)
    report_throughput(plan, rows)
    return not any(row.error for row in rows)


STAGES = (
    ("1/3 matrix", stage_matrix),
    ("2/3 pytest -m gpu", stage_gpu_tests),
    ("3/3 throughput", stage_throughput),
)


def prepare_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    for folder in ("projects", "runs", "logs", "tmp", "cache"):
        (scratch / folder).mkdir(parents=True)


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print(no_cuda_line(), file=sys.stderr)
        return 1
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    plan = make_plan(args, device)
    prepare_scratch(plan.scratch)
    print(f"gpu-check on {device_line(device)}; scratch {plan.scratch}")
    started = time.perf_counter()
    passed = []
    for name, stage in STAGES:
        print(f"\n== stage {name} ==", flush=True)
        stage_started = time.perf_counter()
        passed.append(stage(plan))
        verdict = "passed" if passed[-1] else "FAILED"
        print(f"stage {name}: {verdict} in {time.perf_counter() - stage_started:.0f} s")
    verdict = "passed" if all(passed) else "FAILED"
    print(f"\ngpu-check: {verdict} in {time.perf_counter() - started:.0f} s")
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
