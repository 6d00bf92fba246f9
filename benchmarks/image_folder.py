"""Image folders of real photos: up-front check, loader, training throughput, accuracy curve.

Renders the default project, builds folders of real photo crops with tests/photos.py (50-130 px;
jpg, png, webp, bmp, tif, gif; modes RGB, L, RGBA, 16-bit, palette) and measures the generated
code on them, printing one report with four sections:

1. the up-front image check (`data/image_check.find_unreadable`): images/s with its cache cold and
   warm, on all cores and on one thread;
2. the generated train loader against a bare torchvision ImageFolder + DataLoader with the same
   transform object, in interleaved rounds, plus what each part of a sample costs;
3. training throughput of the generated `train_one_epoch` per model and image size;
4. the accuracy curve of the default recipe (`python -m image_classifier.train`, nothing tuned).

    .venv/bin/python benchmarks/image_folder.py 2>/dev/null   # full run, about 5 minutes on 2 cores
    .venv/bin/python benchmarks/image_folder.py --quick       # smoke run, about 2 minutes
"""

import argparse
import contextlib
import functools
import gc
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
from PIL import Image
from rendered_project import PACKAGE, ROOT, build_training, import_project, render_project
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.datasets.folder import default_loader

SCRATCH = ROOT / ".scratch" / "benchmarks" / "image-folder"
PROJECT_MODULES = ("config.parser", "data.loaders", "data.sampling", "data.image_files")
PROJECT_MODULES += ("data.image_check", "training.loop", "runs.runtime", "training.fit")
sys.path.insert(0, str(ROOT / "tests"))
from photos import build_photo_folder  # noqa: E402  (tests/ is not a package)

# 5 classes x 200 photos: 1,000 files to check, and 1,000 training images for the loader and
# the models (the loader folder adds 12 validation photos per class, which nothing here times).
CHECK_FOLDER = {"layout": "flat", "classes": 5, "train_per_class": 200, "val_per_class": 0}
LOADER_FOLDER = {"layout": "train_val", "classes": 5, "train_per_class": 200, "val_per_class": 12}
CURVE_FOLDER = {"layout": "train_val"}  # photos.py's defaults: 4 classes, 40 train / 12 val each
QUICK_PER_CLASS = 40
BATCH_SIZE = 64
MODELS = ("simple_cnn", "mlp", "resnet18")
IMAGE_SIZES = (64, 128)
# ResNet-18 takes minutes per 1,000 images on 2 cores: its timed "epochs" are the first batches.
BATCH_CAP = {("resnet18", 64): 1, ("resnet18", 128): 3}
QUICK_BATCH_CAP = 1
LOADER_BAR = 0.95  # generated loader samples/s >= this x the bare loader's
EPOCH_TARGET_SECONDS = 10.0  # one epoch of 1,000 images at 128 px, simple_cnn, 2 cores
ACCURACY_MARK = 0.80


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- project and data ------------------------------------------------------------------------


def build_folders(quick: bool) -> dict[str, Path]:
    """The three photo folders under SCRATCH/data, rebuilt on every run (a few seconds)."""
    shapes = {"check": CHECK_FOLDER, "loader": LOADER_FOLDER, "curve": CURVE_FOLDER}
    folders = {}
    for name, shape in shapes.items():
        if quick and name != "curve":
            shape = {**shape, "train_per_class": QUICK_PER_CLASS}
        folders[name] = SCRATCH / "data" / name
        shutil.rmtree(folders[name], ignore_errors=True)
        build_photo_folder(folders[name], **shape)
    return folders


def default_workers(project: dict) -> int:
    """The generated default --num-workers for a dataset of files, in a single process."""
    return project["data.loaders"].default_num_workers(decodes_files=True, local_world_size=1)


def image_paths(folder: Path, project: dict) -> list[Path]:
    is_image = project["data.image_files"].is_image_file
    return sorted(path for path in folder.rglob("*") if path.is_file() and is_image(path))


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over rounds of the round's ratio: rounds run back to back share background load."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def spread(values: list[float], digits: int = 0) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]], right_from: int = 1) -> str:
    align = ["---" if index < right_from else "---:" for index in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


# --- 1. up-front check -----------------------------------------------------------------------


def timed_check(project: dict, root: Path, paths: list[Path], cache: Path) -> float:
    """Seconds of one `find_unreadable` call with its cache under `cache`; every photo must pass."""
    os.environ["XDG_CACHE_HOME"] = str(cache)
    started = time.perf_counter()
    problems = project["data.image_check"].find_unreadable(root, paths)
    seconds = time.perf_counter() - started
    if problems:
        sys.exit(f"the check rejected generated photos: {problems}")
    return seconds


@contextlib.contextmanager
def one_core():
    """os reports a single core, whichever call the generated check sizes its pool by."""
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(os, "cpu_count", return_value=1))
        if hasattr(os, "sched_getaffinity"):
            patches.enter_context(mock.patch.object(os, "sched_getaffinity", return_value={0}))
        yield


def measure_check(project: dict, root: Path, rounds: int) -> dict[str, list[float]]:
    """images/s per case; the two cold cases alternate which goes first."""
    paths = image_paths(root, project)
    rates = {"cold, all cores": [], "warm": [], "cold, 1 core": []}
    for index in range(rounds):
        cases = ("all", "one") if index % 2 == 0 else ("one", "all")
        for case in cases:
            cache = SCRATCH / "check-cache" / f"{index}-{case}"
            shutil.rmtree(cache, ignore_errors=True)
            if case == "one":
                with one_core():
                    seconds = timed_check(project, root, paths, cache)
                rates["cold, 1 core"].append(len(paths) / seconds)
                continue
            rates["cold, all cores"].append(len(paths) / timed_check(project, root, paths, cache))
            rates["warm"].append(len(paths) / timed_check(project, root, paths, cache))
    os.environ["XDG_CACHE_HOME"] = str(SCRATCH / "cache")
    return rates


def check_report(rates: dict[str, list[float]], files: int) -> str:
    rows = [
        [case, f"{statistics.median(values):.0f}", spread(values)] for case, values in rates.items()
    ]
    speedup = median_ratio(rates["cold, all cores"], rates["cold, 1 core"])
    return "\n".join(
        [
            f"{files} photo files (flat layout); {len(rates['warm'])} rounds, median. All cores: "
            f"the generated check as it sizes its own pool ({usable_cores()} cores usable here); "
            "1 core: os.cpu_count and os.sched_getaffinity patched to report one core.",
            "Files are in the OS page cache in every case: cold means the check's own cache "
            "(under $XDG_CACHE_HOME) is empty, warm is the second call on an unchanged folder.",
            "",
            markdown_table(["case", "images/s (median)", "min-max"], rows),
            "",
            f"parallel speed-up, cold, all cores / 1 core: {speedup:.2f}x",
        ]
    )


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# --- 2. loaders ------------------------------------------------------------------------------


def generated_loader(project: dict, folder: Path, workers: int) -> DataLoader:
    """The train loader exactly as the generated trainer builds it."""
    argv = ["--dataset", "image_folder", "--data-dir", str(folder)]
    argv += ["--batch-size", str(BATCH_SIZE), "--num-workers", str(workers)]
    _, training, _ = build_training(project, argv)
    return training.train_loader


def train_transform(loader: DataLoader):
    """The generated loader's own train transform object: photo_transforms(...)[0]."""
    return loader.dataset.dataset.transform  # SeededAugmentation -> ImageFileDataset


def bare_dataset(project: dict, folder: Path, transform) -> datasets.ImageFolder:
    """torchvision's ImageFolder with the given transform and PIL's default loader.

    torchvision's own extension list leaves out .gif; `is_valid_file` takes the generated
    list instead, so that both loaders read the same files.
    """
    is_image = project["data.image_files"].is_image_file
    return datasets.ImageFolder(
        folder / "train",
        transform=transform,
        loader=default_loader,
        is_valid_file=lambda path: is_image(Path(path)),
    )


def bare_loader(dataset: datasets.ImageFolder, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,  # DataLoader refuses persistent workers without workers
        drop_last=False,
    )


def loader_epoch(loader: DataLoader, epoch: int) -> float:
    """samples/s of one full pass, with the generated sampler moved to the next epoch first."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    started = time.perf_counter()
    samples = sum(len(batch[1]) for batch in loader)
    return samples / (time.perf_counter() - started)


def measure_loaders(
    project: dict, folder: Path, worker_counts: list[int], rounds: int
) -> dict[tuple[str, int], list[float]]:
    """One warm-up epoch per loader (starts persistent workers), then rotating rounds."""
    loaders = {}
    for workers in worker_counts:
        loaders["generated", workers] = generated_loader(project, folder, workers)
        bare = bare_dataset(project, folder, train_transform(loaders["generated", workers]))
        if len(bare) != len(loaders["generated", workers].dataset):
            sys.exit(f"bare ImageFolder lists {len(bare)} images, the generated code other ones")
        loaders["bare", workers] = bare_loader(bare, workers)
    keys = list(loaders)
    for key in keys:
        loader_epoch(loaders[key], 0)
    rates = {key: [] for key in keys}
    for index in range(rounds):
        for key in keys[index % len(keys) :] + keys[: index % len(keys)]:
            rates[key].append(loader_epoch(loaders[key], index + 1))
        line = ", ".join(
            f"{name} w{workers} {rates[name, workers][-1]:.0f}" for name, workers in keys
        )
        progress(f"loaders round {index + 1}/{rounds}: {line} samples/s")
    del loaders  # stops the persistent workers
    gc.collect()
    return rates


def loader_report(rates: dict[tuple[str, int], list[float]], samples: int) -> str:
    rows, verdicts = [], []
    for (name, workers), values in rates.items():
        ratio = median_ratio(values, rates["bare", workers])
        cells = [name, str(workers), f"{statistics.median(values):.0f}", spread(values)]
        rows.append([*cells, f"{ratio:.3f}"])
        if name == "generated":
            verdict = "HOLDS" if ratio >= LOADER_BAR else "FAILS"
            verdicts.append(
                f"bar generated >= {LOADER_BAR}x bare (num_workers {workers}): "
                f"{verdict} ({ratio:.3f}x)"
            )
    header = ["loader", "num_workers", "samples/s (median)", "min-max", "generated/bare"]
    return "\n".join(
        [
            f"One epoch = {samples} training photos, batch {BATCH_SIZE}, no model; "
            f"{len(next(iter(rates.values())))} rotating rounds after a warm-up epoch each.",
            "generated: parse_config + build_training (the dataset's build, build_loaders: "
            "SeededShuffle sampler, SeededAugmentation, load_rgb). bare: ImageFolder(train, "
            "the generated loader's train transform object, PIL default_loader) + "
            "DataLoader(shuffle=True, persistent_workers when num_workers > 0).",
            "Both read the same files: torchvision's extension list lacks .gif, so the bare "
            "ImageFolder gets the generated list as is_valid_file. The bare loader reads the "
            "16-bit PNGs (1 file in 21) as all-white pictures, without an error.",
            "",
            markdown_table(header, rows, right_from=1),
            "",
            "generated/bare: median over rounds of the round's generated/bare samples/s",
            *verdicts,
        ]
    )


BARE_SAMPLE = "bare sample: ImageFolder[i]"
GENERATED_SAMPLE = "generated sample: SeededAugmentation[(i, seed)]"
READ_BARE = "read: torchvision default_loader (open, convert RGB)"
READ_GENERATED = "read: generated load_rgb, called as the dataset calls it"
SAMPLE_KEY = "sample key: derived_seed (generated sampler, main process)"
SAME_KIND = {".jpeg": ".jpg", ".tiff": ".tif"}


def sample_costs(project: dict, folder: Path, rounds: int) -> tuple[dict, dict]:
    """CPU µs per sample of each part of a training sample, in this process.

    Every part runs on every sample, one batch of samples after another in a rotating order,
    so that all parts share whatever else the machine does; each call is timed with this
    thread's CPU clock, which leaves out time spent descheduled (photo decoding and the
    transforms of one small image run on the calling thread). Returns ({part: per-round µs},
    {file kind: (files, {read part: per-round µs})}).
    """
    sampling, load_rgb = project["data.sampling"], project["data.image_files"].load_rgb
    loader = generated_loader(project, folder, 0)
    generated, sampler = loader.dataset, loader.sampler
    transform = train_transform(loader)
    bare = bare_dataset(project, folder, transform)
    keys = list(sampler)
    paths = [str(path) for path, _ in generated.dataset.samples]
    load_rgb = functools.partial(load_rgb, min_side=generated.dataset.min_side)  # its draft size
    decoded = [load_rgb(path) for path in paths]
    kinds = [file_kind(path) for path in paths]

    def seeding(index: int, key: tuple[int, int]) -> None:
        with sampling.seeded_cpu_rng(key[1]):
            pass

    parts: dict[str, Callable[[int, tuple[int, int]], object]] = {
        BARE_SAMPLE: lambda index, key: bare[index],
        GENERATED_SAMPLE: lambda index, key: generated[key],
        READ_BARE: lambda index, key: default_loader(paths[index]),
        READ_GENERATED: lambda index, key: load_rgb(paths[index]),
        "train transform on a decoded photo (shared)": lambda index, key: transform(decoded[index]),
        "seeded_cpu_rng enter + exit (generated, worker)": seeding,
        SAMPLE_KEY: lambda index, key: sampling.derived_seed(sampler.seed, sampler.epoch, index),
    }
    names = list(parts)
    costs = {name: [] for name in names}
    by_kind = {kind: {READ_BARE: [], READ_GENERATED: []} for kind in sorted(set(kinds))}
    batches = [keys[start : start + BATCH_SIZE] for start in range(0, len(keys), BATCH_SIZE)]
    for round_index in range(rounds):
        spent = dict.fromkeys(names, 0)
        kind_spent = {kind: dict.fromkeys(reads, 0) for kind, reads in by_kind.items()}
        for position, batch in enumerate(batches):
            shift = (round_index + position) % len(names)
            for name in names[shift:] + names[:shift]:
                for key in batch:
                    started = time.thread_time_ns()
                    parts[name](key[0], key)
                    elapsed = time.thread_time_ns() - started
                    spent[name] += elapsed
                    if name in (READ_BARE, READ_GENERATED):
                        kind_spent[kinds[key[0]]][name] += elapsed
        for name in names:
            costs[name].append(spent[name] / len(keys) / 1e3)
        for kind, reads in kind_spent.items():
            for name, nanoseconds in reads.items():
                by_kind[kind][name].append(nanoseconds / kinds.count(kind) / 1e3)
    return costs, {kind: (kinds.count(kind), reads) for kind, reads in by_kind.items()}


def file_kind(path: str) -> str:
    """'.jpg RGB', '.png I;16', ...: extension (.jpeg as .jpg, .tiff as .tif) and Pillow mode."""
    with Image.open(path) as image:
        mode = image.mode
    suffix = Path(path).suffix.lower()
    return f"{SAME_KIND.get(suffix, suffix)} {mode}"


def costs_report(costs: dict[str, list[float]], by_kind: dict[str, tuple], files: int) -> str:
    bare = statistics.median(costs[BARE_SAMPLE])
    rows = [
        [
            name,
            f"{statistics.median(values):.1f}",
            spread(values),
            f"{statistics.median(values) / bare:.1%}",
        ]
        for name, values in costs.items()
    ]
    kind_rows = []
    for kind, (count, reads) in by_kind.items():
        bare_read, generated_read = (statistics.median(reads[name]) for name in reads)
        cells = [kind, str(count), f"{bare_read:.0f}", f"{generated_read:.0f}"]
        kind_rows.append([*cells, f"{generated_read - bare_read:+.0f}"])
    generated = statistics.median(costs[GENERATED_SAMPLE])
    key = statistics.median(costs[SAMPLE_KEY])
    header = ["part", "CPU µs/sample (median)", "min-max", "of a bare sample"]
    return "\n".join(
        [
            f"Where a sample's time goes: CPU time per sample in one process, "
            f"{len(costs[BARE_SAMPLE])} rounds over the {files} photos, every part run on each "
            f"batch of {BATCH_SIZE} in turn (rotating order):",
            "",
            markdown_table(header, rows),
            "",
            f"generated/bare predicted from these costs for a CPU-bound loader: "
            f"{bare / generated:.3f} (samples), {bare / (generated + key):.3f} with the sampler's "
            "key in the same process or on the same cores",
            "",
            "The two readers per file kind, CPU µs/file (median over rounds):",
            "",
            markdown_table(
                ["file kind", "files", "default_loader", "load_rgb", "difference"], kind_rows
            ),
        ]
    )


# --- 3. training throughput ------------------------------------------------------------------


class FirstBatches:
    """The first `count` batches of a loader, standing in for the loader in train_one_epoch."""

    def __init__(self, loader: DataLoader, count: int) -> None:
        self.loader = loader
        self.count = min(count, len(loader))
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.count)


def training_rates(
    project: dict, folder: Path, model: str, image_size: int, epochs: int, cap: int | None
) -> list[float]:
    """samples/s that the generated train_one_epoch reports, for `epochs` epochs after a warm-up."""
    workers = default_workers(project)
    argv = ["--dataset", "image_folder", "--data-dir", str(folder), "--model", model]
    argv += ["--image-size", str(image_size), "--num-workers", str(workers)]
    argv += ["--device", "cpu", "--output-dir", str(SCRATCH / "runs")]
    config, training, cpu = build_training(project, argv)
    loader = training.train_loader if cap is None else FirstBatches(training.train_loader, cap)
    rates = []
    for epoch in range(epochs + 1):
        loader.sampler.set_epoch(epoch)
        values = project["training.loop"].train_one_epoch(
            training.model,
            loader,
            training,
            cpu,
            config.run.log_every,
            lambda values, step: None,
            show_progress=False,
        )
        training.progress.epoch += 1
        if epoch > 0:  # epoch 0 is the warm-up
            rates.append(values["samples_per_second"])
    del training, loader  # stops the persistent workers
    gc.collect()
    return rates


def measure_training(
    project: dict, folder: Path, epochs: int, quick: bool
) -> dict[tuple[str, int], tuple[list[float], int | None]]:
    results = {}
    for model, image_size in itertools.product(MODELS, IMAGE_SIZES):
        cap = QUICK_BATCH_CAP if quick else BATCH_CAP.get((model, image_size))
        rates = training_rates(project, folder, model, image_size, epochs, cap)
        results[model, image_size] = rates, cap
        progress(
            f"training {model} {image_size} px: {', '.join(f'{r:.0f}' for r in rates)} samples/s"
        )
    return results


def training_report(
    results: dict[tuple[str, int], tuple[list[float], int | None]],
    samples: int,
    workers: int,
    epochs: int,
) -> str:
    rows = []
    for (model, image_size), (rates, cap) in results.items():
        timed = "full epochs" if cap is None else f"first {cap} batches ({cap * BATCH_SIZE} images)"
        rate = statistics.median(rates)
        cells = [model, str(image_size), timed, f"{rate:.0f}", spread(rates)]
        rows.append([*cells, f"{1000 / rate:.1f}"])
    rate = statistics.median(results["simple_cnn", 128][0])
    seconds = 1000 / rate
    verdict = "HOLDS" if seconds <= EPOCH_TARGET_SECONDS else "MISSED"
    header = ["model", "image size", "timed", "samples/s (median)", "min-max", "s per 1,000 images"]
    return "\n".join(
        [
            f"Generated train_one_epoch on {samples} training photos, the project's command line "
            f"(--dataset image_folder --model M --image-size S --num-workers {workers} "
            "--device cpu, other flags default: batch 64, AdamW, fp32); "
            f"median of {epochs} epochs after a warm-up epoch.",
            "",
            markdown_table(header, rows, right_from=3),
            "",
            f"target: one epoch of 1,000 images at 128 px, simple_cnn, in about "
            f"{EPOCH_TARGET_SECONDS:.0f} s or less: {verdict} ({seconds:.1f} s at {rate:.0f} "
            "samples/s)",
        ]
    )


# --- 4. accuracy curve -----------------------------------------------------------------------


def run_curve(project_dir: Path, folder: Path, extra: list[str]) -> tuple[list[dict], float]:
    """The default recipe as a user runs it; returns metrics.jsonl's records and the wall time."""
    output_dir = SCRATCH / "curve-runs"
    shutil.rmtree(output_dir, ignore_errors=True)
    command = [sys.executable, "-m", f"{PACKAGE}.train", "--dataset", "image_folder"]
    command += ["--data-dir", str(folder), "--no-progress", "--output-dir", str(output_dir)]
    command += ["--name", "curve", *extra]
    env = {**os.environ, "PYTHONPATH": str(project_dir / "src")}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=SCRATCH, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    lines = (output_dir / "curve" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], wall


def curve_report(records: list[dict], wall: float, extra: list[str]) -> str:
    rows, elapsed, reached = [], 0.0, None
    for record in records:
        elapsed += record["epoch_seconds"]
        if reached is None and record["val_acc"] >= ACCURACY_MARK:
            reached = (record["epoch"], elapsed)
        cells = [str(record["epoch"]), f"{elapsed:.1f}"]
        rows.append([*cells, f"{record['val_acc']:.3f}", f"{record['val_loss']:.3f}"])
    if reached is None:
        mark = f"val_acc never reached {ACCURACY_MARK:.2f}"
    else:
        mark = (
            f"val_acc first reached {ACCURACY_MARK:.2f} at epoch {reached[0]}, {reached[1]:.1f} s"
        )
    best = max(record["val_acc"] for record in records)
    return "\n".join(
        [
            f"`python -m {PACKAGE}.train --dataset image_folder --data-dir D --no-progress "
            f"--output-dir O --name curve{''.join(' ' + flag for flag in extra)}`, D: 4 classes, "
            "40 train and 12 val photos each; every other flag default.",
            "",
            markdown_table(["epoch", "training s (cumulative)", "val_acc", "val_loss"], rows),
            "",
            "training s: sum of metrics.jsonl's epoch_seconds (the training epochs alone)",
            f"{mark} of training; best val_acc {best:.3f}; whole command {wall:.1f} s wall",
        ]
    )


# --- machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


class CpuMeter:
    """CPU time that other processes used while a block ran, in cores busy on average.

    /proc/stat counts every process on the machine, including those this process cannot see
    (another container sharing the cores); this process and its reaped children (DataLoader
    workers, the training subprocess) are subtracted.
    """

    def __init__(self) -> None:
        self.started = self.snapshot()

    @staticmethod
    def snapshot() -> tuple[float, float, float]:
        """(wall s, machine busy CPU s, own CPU s)."""
        stat = Path("/proc/stat")
        busy = float("nan")
        if stat.exists():
            ticks = [int(value) for value in stat.read_text().splitlines()[0].split()[1:9]]
            busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # - idle, iowait
        usage = [
            resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        ]
        own = sum(part.ru_utime + part.ru_stime for part in usage)
        return time.perf_counter(), busy, own

    def others(self) -> str:
        """Cores that other processes kept busy since the meter started, e.g. '0.03 cores'."""
        (wall0, busy0, own0), (wall1, busy1, own1) = self.started, self.snapshot()
        cores = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9)
        return "n/a" if cores != cores else f"{cores:.2f} cores"


def machine_lines() -> list[str]:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"machine: {os.cpu_count()} cores ({usable_cores()} usable by this process), {cpu_model()}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}",
        f"load average (1, 5, 15 min) at the start: {load}",
    ]


# --- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved loader rounds")
    parser.add_argument("--quick", action="store_true", help="smoke run: small folders, 2 rounds")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.quick:
        args.rounds = 2
    return args


def main() -> None:
    args = parse_args()
    started, whole_run = time.perf_counter(), CpuMeter()
    header = machine_lines()
    os.environ["XDG_CACHE_HOME"] = str(SCRATCH / "cache")  # never the user's ~/.cache
    shutil.rmtree(SCRATCH / "cache", ignore_errors=True)
    shutil.rmtree(SCRATCH / "runs", ignore_errors=True)
    project_dir = render_project(SCRATCH / "project", SCRATCH)
    project = import_project(project_dir, PROJECT_MODULES)
    folders = build_folders(args.quick)
    workers = default_workers(project)
    train_images = len(image_paths(folders["loader"] / "train", project))
    sections, others = {}, {}

    progress("1. up-front check")
    meter, title = CpuMeter(), "1. Up-front check speed"
    rates = measure_check(project, folders["check"], 1 if args.quick else 5)
    sections[title] = check_report(rates, len(image_paths(folders["check"], project)))
    others[title] = meter.others()

    progress("2. loaders")
    meter, title = CpuMeter(), "2. Loader speed"
    worker_counts = sorted({workers, 0}, reverse=True)
    rates = measure_loaders(project, folders["loader"], worker_counts, args.rounds)
    costs = costs_report(
        *sample_costs(project, folders["loader"], 2 if args.quick else 5), train_images
    )
    sections[title] = f"{loader_report(rates, train_images)}\n\n{costs}"
    others[title] = meter.others()

    progress("3. training throughput")
    meter, title = CpuMeter(), "3. Training throughput per model and image size"
    epochs = 1 if args.quick else 3
    results = measure_training(project, folders["loader"], epochs, args.quick)
    sections[title] = training_report(results, train_images, workers, epochs)
    others[title] = meter.others()

    progress("4. accuracy curve")
    meter, title = CpuMeter(), "4. Accuracy curve of the default recipe on real photos"
    extra = ["--epochs", "2"] if args.quick else []  # the smoke run only shortens the run
    sections[title] = curve_report(*run_curve(project_dir, folders["curve"], extra), extra)
    others[title] = meter.others()

    load_after = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print("\n".join(header))
    print(f"load average at the end: {load_after}")
    print(f"other processes on the machine kept {whole_run.others()} busy on average")
    print(f"generated default num_workers for image_folder: {workers}")
    for title, body in sections.items():
        print(f"\n## {title}\n\n{body}\n\nother processes meanwhile: {others[title]}")
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
