"""Which run folder a command writes into, and making sure it is the folder's only writer.

- A folder "holds a run" once it has a checkpoint (last.pt or best.pt). Such a folder is
  continued only from its own last.pt (--resume auto, or --resume <folder>/last.pt); it is never
  started over, nor written into from another run's checkpoint.
- A folder without a checkpoint (a run that stopped before its first epoch ended) may be
  started again by the same command.
- A command its launcher started again (torchrun --max-restarts after a failed worker, a
  requeued Slurm job) continues from the folder's last.pt whatever --resume says.
- While a run trains, <folder>/.lock holds its pid and host (and Slurm job); a second process
  is refused. A lock left by a process that died on this host, or by an earlier run of the same
  requeued Slurm job, is taken over, with a log line.
- A folder another command keeps is never trained into (OTHER_COMMANDS_FOLDERS: each kind, by
  the files that mark it).
"""

import json
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import UserError

CHECKPOINTS = ("last.pt", "best.pt")
LOCK_NAME = ".lock"
OTHER_COMMANDS_FOLDERS: dict[str, tuple[str, ...]] = {}
{%- if cookiecutter.sweeps == "yes" %}
# What tells a run folder and a sweep's study folder apart: neither command writes into the other.
RUN_FILES = (*CHECKPOINTS, "config.yaml", "train.log", "metrics.jsonl", LOCK_NAME)
OTHER_COMMANDS_FOLDERS["a sweep's study folder"] = ("study.db", "study.lock")
{%- endif %}
RESTART_COUNTS = ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT")


def restart_count(variable: str) -> int:
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() else 0


def relaunched() -> bool:
    """Whether torchrun restarted this command's workers or Slurm requeued its job."""
    return any(restart_count(variable) > 0 for variable in RESTART_COUNTS)


def resume_source(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from (None: start afresh); refuse to mix two runs."""
    last = run_dir / "last.pt"
    if relaunched() and last.exists():
        return last
    if resume == "auto":
        if last.exists():
            return last
        refuse_if_it_holds_a_run(run_dir, "has no last.pt to continue from")
        return None
    if resume is not None:
        source = Path(resume)
        if not source.is_file():
            raise UserError(
                f"checkpoint {source} does not exist: check the path or use --resume auto"
            )
        if continues_in_place(run_dir, source):
            return source
        refuse_if_it_holds_a_run(
            run_dir, f"holds another run than {source}'s: pass --name NEW to continue it there"
        )
        return source
    refuse_if_it_holds_a_run(
        run_dir, "already holds a run: pass --resume auto to continue it or --name NEW"
    )
    return None


def continues_in_place(run_dir: Path, checkpoint: Path | None) -> bool:
    """Whether `checkpoint` is the run folder's own last.pt (not a branch from another run)."""
    last = run_dir / "last.pt"
    return checkpoint is not None and last.exists() and checkpoint.resolve() == last.resolve()


def present(folder: Path, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if (folder / name).exists()]


def refuse_another_commands_folder(run_dir: Path) -> None:
    for kind, markers in OTHER_COMMANDS_FOLDERS.items():
        held = present(run_dir, markers)
        if held:
            raise UserError(
                f"{run_dir} is {kind} ({', '.join(held)}), not a run folder: pass another --name"
            )


def refuse_if_it_holds_a_run(run_dir: Path, problem: str) -> None:
    held = present(run_dir, CHECKPOINTS)
    if held:
        raise UserError(f"run folder {run_dir} ({', '.join(held)}) {problem}")


@contextmanager
def owned(run_dir: Path, log) -> Iterator[None]:
    """Hold the run folder's lock; on the way out, leave no empty folder this run created."""
    refuse_another_commands_folder(run_dir)
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    lock = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        take_lock(lock, log)
    except OSError as error:
        raise UserError(
            f"cannot write run folder {run_dir} ({error.strerror}): pick a writable --output-dir"
        ) from None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        for folder in created:  # deepest first
            if any(folder.iterdir()):
                break
            folder.rmdir()


@contextmanager
def owned_by_rank0(run_dir: Path, runtime, log) -> Iterator[None]:
    """Rank 0 holds the run folder (see `owned`); a refusal is raised on every rank, so that
    none waits for rank 0 in vain."""
    with ExitStack() as held:
        refusal = None
        if runtime.is_main:
            try:
                held.enter_context(owned(run_dir, log))
            except UserError as error:
                refusal = str(error)
        if (refusal := runtime.rank0_decides(refusal)) is not None:
            raise UserError(refusal)
        yield


def lock_owner() -> dict:
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    if "SLURM_JOB_ID" in os.environ:
        owner["slurm_job"] = os.environ["SLURM_JOB_ID"]
        owner["slurm_restart"] = restart_count("SLURM_RESTART_COUNT")
    return owner


def take_lock(lock: Path, log) -> None:
    owner = lock_owner()
    for _ in range(3):  # a stale lock taken over by another process at the same moment
        try:
            with open(lock, "x") as file:
                json.dump(owner, file)
            return
        except FileExistsError:
            holder = read_lock(lock)
        if holder is not None and not (is_dead_here(holder) or is_earlier_run_of_job(holder)):
            job = f" (Slurm job {holder['slurm_job']})" if "slurm_job" in holder else ""
            raise UserError(
                f"run folder {lock.parent} is in use by process {holder['pid']} on "
                f"{holder['host']}{job}: wait for it to finish or pass --name NEW (delete {lock} "
                "if no such process runs)"
            )
        if holder is not None and take_over(lock, holder):
            log.info("took over %s from process %d, which no longer runs", lock, holder["pid"])
    raise UserError(f"could not lock run folder {lock.parent}: another process keeps taking it")


def read_lock(lock: Path) -> dict | None:
    """The lock's owner, or None when the lock vanished or is being written."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"pid", "host"} <= holder.keys() else None


def is_dead_here(holder: dict) -> bool:
    """True only for a process on this host that no longer exists."""
    if holder["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def is_earlier_run_of_job(holder: dict) -> bool:
    """A lock left by this Slurm job before it was requeued: Slurm ended that run first,
    perhaps on another node, so its pid cannot be checked."""
    mine = lock_owner()
    return (
        "slurm_job" in mine
        and holder.get("slurm_job") == mine["slurm_job"]
        and isinstance(holder.get("slurm_restart"), int)
        and holder["slurm_restart"] < mine["slurm_restart"]
    )


def take_over(lock: Path, holder: dict) -> bool:
    """Remove a dead owner's lock; the rename lets only one of several contenders do it."""
    claimed = lock.with_name(f"{lock.name}.{os.getpid()}")
    try:
        os.rename(lock, claimed)
    except FileNotFoundError:
        return False
    if read_lock(claimed) != holder:  # another process took it over first: give it back
        os.rename(claimed, lock)
        return False
    claimed.unlink()
    return True
