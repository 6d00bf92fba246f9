"""No secrets, safe checkpoint loading, answers that cannot run code, and a .gitignore that
keeps runs, checkpoints, wandb folders and .env out of git."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from options import TEMPLATE_DIR, code_shaping_combinations, combination_id

KEY_LIKE = {
    "40-hex token (wandb API key shape)": re.compile(r"\b[0-9a-f]{40}\b"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "credential assignment": re.compile(
        r"(?i)(api[_-]?key|secret|token|password)['\"]?\s*[:=]\s*['\"][^'\"\s]{8,}['\"]"
    ),
}
# GitHub Actions are pinned to full commit SHAs, which share the 40-hex shape of a key.
PINNED_ACTION = re.compile(r"uses: [\w./-]+@[0-9a-f]{40}")


def key_like_literals(root: Path) -> list[str]:
    findings = []
    for path in root.rglob("*"):
        if not path.is_file() or ".git" in path.relative_to(root).parts:
            continue
        text = PINNED_ACTION.sub("", path.read_text(errors="ignore"))
        for name, pattern in KEY_LIKE.items():
            if pattern.search(text):
                findings.append(f"{path.relative_to(root)}: {name}")
    return findings


@pytest.mark.parametrize("combo", code_shaping_combinations(), ids=combination_id)
def test_rendered_project_holds_no_key_like_literal(render, combo):
    assert key_like_literals(render(**combo)) == []


def test_key_scanner_finds_a_planted_key(tmp_path):
    (tmp_path / "settings.py").write_text('WANDB_API_KEY = "' + "ab12" * 10 + '"\n')
    assert key_like_literals(tmp_path) == [
        "settings.py: 40-hex token (wandb API key shape)",
        "settings.py: credential assignment",
    ]


def test_template_itself_holds_no_key_like_literal():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=TEMPLATE_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    findings = [
        finding
        for name in tracked
        for finding in key_like_literals_in_file(TEMPLATE_DIR, Path(name))
        if not name.startswith("tests/test_security.py")
    ]
    assert findings == []


def key_like_literals_in_file(root: Path, relative: Path) -> list[str]:
    text = PINNED_ACTION.sub("", (root / relative).read_text(errors="ignore"))
    return [f"{relative}: {name}" for name, pattern in KEY_LIKE.items() if pattern.search(text)]


def test_checkpoints_load_with_weights_only_everywhere(render):
    project = render(logger="both", mixed_precision="yes", multi_gpu="both", onnx_export="yes")
    calls = [
        (path.name, line.strip())
        for path in project.rglob("*.py")
        for line in path.read_text().splitlines()
        if "torch.load(" in line
    ]
    assert calls, "the project loads checkpoints somewhere"
    assert [call for call in calls if "weights_only=True" not in call[1]] == []


def test_gitignore_keeps_outputs_and_secrets_out(render, tmp_path):
    project = render(logger="both")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    ignored_paths = ["runs/exp/last.pt", "wandb/run-1/files", "model.onnx", ".env", "x/best.pt"]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *ignored_paths],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == ignored_paths
    subprocess.run(["rm", "-rf", str(project / ".git")], check=True)


def test_answers_cannot_run_code_in_hooks_or_generated_files(tmp_path):
    marker = tmp_path / "INJECTED"
    payloads = {
        "description": f'"""; import os; os.system("touch {marker}"); """ \\ \'',
        "author_name": f"x'); __import__('os').system('touch {marker}'); ('",
        "project_name": f'Name " + __import__("os").system("touch {marker}") + "',
    }
    pairs = [f"{key}={value}" for key, value in payloads.items()]
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE_DIR), "--no-input"]
        + ["--output-dir", str(tmp_path), "project_slug=safe_net", "init_git=yes", *pairs],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    project = tmp_path / "safe_net"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == payloads["description"]
    assert pyproject["project"]["authors"][0]["name"] == payloads["author_name"]
    probe = subprocess.run(
        [sys.executable, "-c", "import safe_net.config, safe_net.train"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert not marker.exists()
