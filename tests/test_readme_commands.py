"""The generated README's command blocks run as written, in order, in a fresh render.

Every ```bash block is marked `<!-- runnable on CPU -->` or `<!-- not run by the README test:
WHY -->` (it needs a GPU, the network, a cluster or a login, or it starts a server). The
runnable ones run in one shell session, as a reader pasting them in turn would run them, with
`data/photos` holding a few real photographs: the reader's own images that the README's
image-folder examples name.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import project_environment, read_metrics
from options import code_shaping_combinations, combination_id
from photos import build_photo_folder

BLOCK = re.compile(r"(?:<!-- ([^\n]*) -->\n)?```bash\n(.*?)```", re.DOTALL)
RUNNABLE = "runnable on CPU"
NOT_RUN = re.compile(r"not run by the README test: \S.*")
# The render whose README holds every runnable block (DDP, ONNX); without a logger, since no
# logger block is runnable and each would add its own cost to every run.
EVERY_RUNNABLE_BLOCK = {
    "logger": "none",
    "mixed_precision": "yes",
    "multi_gpu": "both",
    "onnx_export": "yes",
}


def command_blocks(readme: str) -> list[tuple[str, str]]:
    """(marker, commands) of each bash block: the comment just above it, or ""."""
    return BLOCK.findall(readme)


def runnable_script(readme: str) -> str:
    return "\n".join(commands for marker, commands in command_blocks(readme) if marker == RUNNABLE)


def command_shims(folder: Path, python: list[str]) -> Path:
    """`python` and `torchrun` on PATH, as in an activated environment (but preloaded).

    `python -m ruff` runs in this interpreter: ruff replaces its process with its binary,
    which a preloaded process cannot report back.
    """
    folder.mkdir()
    preloaded = " ".join(f'"{part}"' for part in python)
    scripts = {
        "python": f'case "$1 $2" in "-m ruff") exec "{sys.executable}" "$@";; esac\n'
        f'exec {preloaded} "$@"\n',
        "torchrun": f'exec {preloaded} -m torch.distributed.run "$@"\n',
    }
    for name, script in scripts.items():
        shim = folder / name
        shim.write_text("#!/bin/sh\n" + script)
        shim.chmod(0o755)
    return folder


@pytest.mark.parametrize("combo", code_shaping_combinations(), ids=combination_id)
def test_every_command_block_says_whether_it_runs_on_cpu(render, combo):
    blocks = command_blocks((render(**combo) / "README.md").read_text())
    unmarked = [
        commands.splitlines()[0]
        for marker, commands in blocks
        if marker != RUNNABLE and not NOT_RUN.fullmatch(marker)
    ]
    assert unmarked == []
    assert sum(marker == RUNNABLE for marker, _ in blocks) >= 10


def run_folders(script: str) -> set[str]:
    """The run folders the commands name (`--name NAME`), and the default run's."""
    return set(re.findall(r"--name (\S+)", script)) | {"digits-simple_cnn"}


def final_val_acc(run: Path) -> float:
    return read_metrics(run)[-1]["val_acc"]


@pytest.mark.slow  # about two minutes: run by make test, not the fast tier
def test_readme_commands_run_in_order_as_written(render, preloaded_python, tmp_path):
    project = shutil.copytree(render(**EVERY_RUNNABLE_BLOCK), tmp_path / "project")
    # 66 training images: enough for the default --batch-size 64.
    photos = {"classes": 3, "train_per_class": 22, "val_per_class": 2, "test_per_class": 2}
    build_photo_folder(project / "data" / "photos", **photos)
    script = runnable_script((project / "README.md").read_text())
    shims = command_shims(tmp_path / "bin", preloaded_python)
    env = project_environment(project, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "-e", "-x", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    runs = project / "runs"
    missing = [name for name in run_folders(script) if not (runs / name / "best.pt").exists()]
    assert missing == []
    assert [record["epoch"] for record in read_metrics(runs / "quickstart")] == [1, 2, 3]
    assert (runs / "quickstart" / "model.onnx").exists()
    assert final_val_acc(runs / "ddp-quickstart") > 0.8  # one epoch scored 0.09 (BatchNorm)
    assert final_val_acc(runs / "digits-simple_cnn") > 0.95  # "~98%"
    assert (runs / "sweep" / "best.yaml").exists() and (
        runs / "photos-sweep" / "best.yaml"
    ).exists()
    for table in ("predictions.csv", "last.csv", "todo.csv", "onnx.csv"):
        assert len((project / table).read_text().splitlines()) > 1, table
