"""The up-front check of an image folder: every image decoded fully, on all cores, with the
results cached per file (size and modification time) so an unchanged folder is not decoded
again."""

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..errors import first_line
from .image_files import load_rgb
from .loaders import available_cores

PARALLEL_CHECK_MIN = 256  # fewer files are checked faster than processes start
log = logging.getLogger("train.data")


def find_unreadable(root: Path, paths: list[Path]) -> dict[Path, str]:
    """Decode every image fully on all cores; files unchanged since the last check are cached."""
    cache_file = check_cache_file(root)
    cached = read_cache(cache_file)
    results, to_check = {}, []
    for path in paths:
        stamp = file_stamp(path)
        entry = cached.get(str(path))
        if entry is not None and entry[:2] == stamp:
            results[str(path)] = entry
        else:
            to_check.append((path, stamp))
    started = time.perf_counter()
    problems = problems_of([path for path, _ in to_check])
    for (path, stamp), problem in zip(to_check, problems, strict=True):
        results[str(path)] = [*stamp, problem]
    seconds = time.perf_counter() - started
    if to_check:
        log.info(
            "checked %d image(s) in %.1f s (%.0f images/s), %d unchanged since the last check",
            len(to_check),
            seconds,
            len(to_check) / max(seconds, 1e-9),
            len(paths) - len(to_check),
        )
        write_cache(cache_file, results)
    return {Path(key): entry[2] for key, entry in results.items() if entry[2]}


def problems_of(paths: list[Path]) -> list[str]:
    """image_problem for each path, in processes on every core when there are enough files to
    repay starting them (decoding holds the GIL too long for threads to help)."""
    cores = available_cores()
    if cores < 2 or len(paths) < PARALLEL_CHECK_MIN:
        return [image_problem(path) for path in paths]
    chunk = min(256, max(1, len(paths) // (4 * cores)))
    with ProcessPoolExecutor(max_workers=cores) as pool:
        return list(pool.map(image_problem, paths, chunksize=chunk))


def image_problem(path: Path) -> str:
    """'' for an image that decodes completely, else why it does not."""
    try:
        load_rgb(path)
    except Exception as error:  # Pillow raises many types for broken files; all mean "unreadable"
        return first_line(error)
    return ""


def file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def check_cache_file(root: Path) -> Path:
    """One cache file per data folder, in the user's cache directory (never in the data)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return base / __name__.split(".")[0] / "image-checks" / f"{key}.json"


def read_cache(cache_file: Path) -> dict:
    try:
        cached = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def write_cache(cache_file: Path, results: dict) -> None:
    """Atomic, so processes checking the same folder at once never read a torn file."""
    temporary = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(results))
        os.replace(temporary, cache_file)
    except OSError:
        temporary.unlink(missing_ok=True)  # a cache that cannot be written only costs time
