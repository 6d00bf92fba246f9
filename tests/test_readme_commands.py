"""The generated README's commands marked `<!-- runnable on CPU -->` run as written."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_project_suites import REPRESENTATIVE

from conftest import project_environment, read_metrics
from options import combination_id

RUNNABLE_BLOCK = re.compile(r"<!-- runnable on CPU -->\n```bash\n(.*?)```", re.DOTALL)


def runnable_blocks(readme: str) -> list[str]:
    return RUNNABLE_BLOCK.findall(readme)


def command_shims(folder: Path, python: list[str]) -> Path:
    """`python` and `torchrun` on PATH, as in an activated environment (but preloaded)."""
    folder.mkdir()
    launchers = {"python": python, "torchrun": [*python, "-m", "torch.distributed.run"]}
    for name, command in launchers.items():
        shim = folder / name
        shim.write_text("#!/bin/sh\nexec " + " ".join(f'"{part}"' for part in command) + ' "$@"\n')
        shim.chmod(0o755)
    return folder


def test_readme_marks_its_quick_start_runnable(render):
    readme = (render() / "README.md").read_text()
    assert len(runnable_blocks(readme)) >= 1


@pytest.mark.parametrize("combo", REPRESENTATIVE, ids=combination_id)
def test_runnable_readme_commands_succeed(render, preloaded_python, tmp_path, combo):
    project = render(**combo)
    blocks = runnable_blocks((project / "README.md").read_text())
    shims = command_shims(tmp_path / "bin", preloaded_python)
    env = project_environment(project, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    env.pop("WANDB_MODE", None)  # the README sets it where it needs it
    script = "\n".join(blocks)  # one shell session, as a reader pasting them in turn
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{script}\n{result.stderr[-3000:]}"
    runs = project / "runs"
    assert (runs / "quickstart" / "best.pt").exists()
    assert (runs / "quickstart" / "eval_val.json").exists()
    assert [record["epoch"] for record in read_metrics(runs / "quickstart")] == [1, 2, 3]
    if combo["onnx_export"] == "yes":
        assert (runs / "quickstart" / "model.onnx").exists()
    subprocess.run(["rm", "-rf", str(runs)], check=True)
