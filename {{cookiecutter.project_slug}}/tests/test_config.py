import dataclasses
import re
import subprocess
import sys

import pytest

from {{ cookiecutter.project_slug }}.config.parser import build_parser, parse_config
from {{ cookiecutter.project_slug }}.config.schema import config_yaml, update_config_yaml


def test_yaml_supplies_defaults_and_flags_win(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("epochs: 7\nlr: 0.01\nmodel: mlp\n")
    config = parse_config(["--config", str(config_file), "--lr", "0.5"])
    assert (config.run.epochs, config.optim.lr, config.model.model) == (7, 0.5, "mlp")


def test_a_runs_config_yaml_is_a_config_file(tmp_path):
    """config.yaml in a run folder holds every flag's value and is accepted by --config."""
    saved = parse_config(["--epochs", "3", "--lr", "0.02", "--name", "first"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_yaml(saved))
    assert parse_config(["--config", str(config_file)]) == saved


def test_a_resume_with_other_flags_rewrites_config_yaml_to_what_the_run_became(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_yaml(parse_config(["--epochs", "2", "--name", "run"])))
    started = config_file.read_text()
    resumed = parse_config(["--epochs", "2", "--name", "run", "--resume", "auto"])
    assert update_config_yaml(config_file, resumed) == []
    assert config_file.read_text() == started
    longer = parse_config(["--epochs", "3", "--name", "run", "--resume", "auto"])
    assert update_config_yaml(config_file, longer) == ["epochs 2 -> 3"]
    assert parse_config(["--config", str(config_file)]) == parse_config(
        ["--epochs", "3", "--name", "run"]
    )
    assert [path.name for path in tmp_path.iterdir()] == ["config.yaml"]


def test_config_is_frozen_and_grouped():
    config = parse_config(["--batch-size", "32", "--epochs", "4"])
    assert config.data.batch_size == 32 and config.run.epochs == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0


@pytest.mark.parametrize(
    "flags",
    [["--epochs", "0"], ["--lr", "-1"], ["--batch-size", "many"], ["--model", "vgg"]],
)
def test_bad_flags_exit_with_one_line(flags, capsys):
    with pytest.raises(SystemExit) as raised:
        parse_config(flags)
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "\n" not in error


def test_help_does_not_import_torch():
    command = [sys.executable, "-X", "importtime", "-m", "{{ cookiecutter.project_slug }}.train"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--batch-size" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "{{ cookiecutter.project_slug }}.config.schema" in imported  # the probe does see imports
    assert "torch" not in imported


def test_help_states_each_default_once():
    help_text = " ".join(build_parser().format_help().split())  # undo argparse's line wrapping
    assert "--epochs EPOCHS training epochs (default: 15)" in help_text
    assert "(default: None)" not in help_text and "(default: False)" not in help_text
    assert re.search(r"\(default: [^)]*\) \(default:", help_text) is None
