"""configs/wandb_sweep.yaml searches what configs/sweep.yaml searches, in a form train takes."""

from pathlib import Path

import yaml

from {{ cookiecutter.project_slug }}.config.parser import parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def as_wandb(entry: dict) -> dict:
    """A sweep.yaml entry in wandb's words."""
    if entry["type"] == "categorical":
        return {"values": entry["choices"]}
    assert "step" not in entry and not (entry["type"] == "int" and entry.get("log"))
    if entry["type"] == "int":
        distribution = "int_uniform"
    else:
        distribution = "log_uniform_values" if entry.get("log") else "uniform"
    return {"distribution": distribution, "min": entry["low"], "max": entry["high"]}


def test_both_files_search_the_same_parameters_ranges_and_choices():
    space, wandb_sweep = load("sweep.yaml"), load("wandb_sweep.yaml")
    assert wandb_sweep["parameters"] == {name: as_wandb(entry) for name, entry in space.items()}
    assert wandb_sweep["metric"] == {"name": "val_acc", "goal": "maximize"}


def test_train_takes_the_arguments_the_agent_passes(tmp_path):
    """The agent passes --name=value for each parameter; every end of every range parses."""
    command = " ".join(load("wandb_sweep.yaml")["command"])
    assert "python -m {{ cookiecutter.project_slug }}.train" in command
    assert "${args_no_boolean_flags}" in command
    for name, values in load("wandb_sweep.yaml")["parameters"].items():
        for value in values.get("values", [values.get("min"), values.get("max")]):
            argv = [f"--{name}={value}", "--output-dir", str(tmp_path), "--name", "agent-run"]
            assert parse_config(argv).to_dict()[name.replace("-", "_")] == value
