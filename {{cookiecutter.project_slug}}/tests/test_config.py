import subprocess
import sys

import pytest

from {{ cookiecutter.project_slug }}.config import parse_config


def test_yaml_supplies_defaults_and_flags_win(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("epochs: 7\nlr: 0.01\nmodel: mlp\n")
    config = parse_config(["--config", str(config_file), "--lr", "0.5"])
    assert (config.epochs, config.lr, config.model) == (7, 0.5, "mlp")


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
    probe = (
        "import sys\n"
        "from {{ cookiecutter.project_slug }}.train import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--batch-size" in result.stdout
