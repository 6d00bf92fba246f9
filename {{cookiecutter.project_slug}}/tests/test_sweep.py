"""The sweep command: its search-space checks, and sweeps of real training processes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from {{ cookiecutter.project_slug }} import sweep
from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.sweeps.study import open_study

from conftest import QUICK

PROJECT = Path(__file__).resolve().parents[1]
SWEEP = [sys.executable, "-m", "{{ cookiecutter.project_slug }}.sweep"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LR_SPACE = "lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
# Digits learn within an epoch at lr 3e-3 and not at all at 1e-7: a clear pruning decision.
DIGITS = ["--model", "mlp", "--batch-size", "32", "--epochs", "3", "--warmup-epochs", "0"]
TIMEOUT = 600
LONG_RUN_EPOCHS = 10


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def environment() -> dict:
    """Child processes find the package wherever pytest was started from."""
    source = [str(PROJECT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(source)}


def sweep_command(space: Path, output: Path, flags: list[str], train: list[str]) -> list[str]:
    return [*SWEEP, "--space", str(space), "--output-dir", str(output), *flags, "--", *train]


def run_sweep(space: Path, output: Path, flags: list[str], train: list[str]) -> None:
    result = subprocess.run(
        sweep_command(space, output, flags, train),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def load_study(output: Path) -> optuna.Study:
    return optuna.load_study(
        study_name="sweep", storage=f"sqlite:///{output / 'sweep' / 'study.db'}"
    )


def run_dir(output: Path, number: int) -> Path:
    return output / "sweep" / f"trial-{number:04d}"


def fails_with_one_line(capsys, argv: list[str]) -> str:
    assert sweep.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr: {type: float, low: 1.0e-4\n", "not valid YAML"),
        ("- lr\n- optimizer\n", "must map train flags"),
        ("learning-rate: {type: float, low: 0.1, high: 1.0}\n", "learning-rate is not a train"),
        ("name: {type: categorical, choices: [a, b]}\n", "name is not a train flag"),
        ("lr: {type: gaussian, low: 0.1, high: 1.0}\n", "lr needs type: float, int or"),
        ("lr: 0.1\n", "lr needs type"),
        ("lr: {type: float, low: 0.1, high: 0.01}\n", "lr: low 0.1 must be below high 0.01"),
        ("lr: {type: float, low: 0.1}\n", "lr: float needs low and high"),
        ("lr: {type: float, low: 0.0, high: 0.1}\n", "lr: low must be a positive finite"),
        ("lr: {type: float, low: 0.1, high: 1.0, lg: true}\n", "not 'lg'"),
        ("lr: {type: float, low: 1.0e-4, high: 0.1, log: true, step: 0.01}\n", "cannot be com"),
        ("epochs: {type: int, low: 1.5, high: 3}\n", "epochs: low must be a whole number"),
        ("optimizer: {type: categorical, choices: [adamw, lion]}\n", "one of adamw, sgd"),
        ("optimizer: {type: categorical, choices: []}\n", "needs a list of choices"),
        ("nesterov: {type: float, low: 0.0, high: 1.0}\n", "nesterov is on or off"),
        ("lr: {type: float, low: 0.1, high: 1.0}\nlr: {type: float, low: 1, high: 2}\n", "twice"),
        (LR_SPACE.replace("lr", "weight_decay") + LR_SPACE.replace("lr", "weight-decay"), "second"),
    ],
)
def test_a_bad_space_is_one_line_naming_file_and_key(tmp_path, capsys, text, expected):
    space = write_space(tmp_path, text)
    argv = ["--space", str(space), "--trials", "2", "--output-dir", str(tmp_path / "runs")]
    error = fails_with_one_line(capsys, argv)
    assert str(space) in error and expected in error
    assert not (tmp_path / "runs").exists()


def test_a_missing_space_file(tmp_path, capsys):
    argv = ["--space", str(tmp_path / "nope.yaml"), "--trials", "2"]
    assert "cannot read --space" in fails_with_one_line(capsys, argv)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--trials", "0"], "--trials: must be a positive whole number"),
        (["--trials", "2", "--parallel", "0"], "--parallel: must be a positive whole number"),
        (["--trials", "2", "--study", "a/b"], "--study: must be a plain folder name"),
        (["--trials", "2", "--pruner", "hyperband"], "--pruner: invalid choice"),
        (["--trials", "2", "--pruner-warmup-epochs", "-1"], "--pruner-warmup-epochs: must be"),
        (["--trials", "2", "--", "--epochs", "0"], "(see train --help)"),
        (["--trials", "2", "--", "--optimizer", "lion"], "(see train --help)"),
        (["--trials", "2", "--", "--name", "mine"], "--name after -- is set for each trial"),
        (["--trials", "2", "--", "--lr", "0.1"], "--lr is both in the search space and after"),
    ],
)
def test_bad_flags_stop_before_any_trial(tmp_path, capsys, flags, expected):
    space = write_space(tmp_path, LR_SPACE)
    split = flags.index("--") if "--" in flags else len(flags)
    argv = ["--space", str(space), "--output-dir", str(tmp_path / "runs"), *flags[:split]]
    error = fails_with_one_line(capsys, [*argv, *flags[split:]])
    assert expected in error
    assert not (tmp_path / "runs").exists()


def test_a_study_continues_only_with_the_train_flags_and_space_it_began_with(tmp_path, capsys):
    optimizers = "optimizer: {type: categorical, choices: [adamw, sgd]}\n"
    space = write_space(tmp_path, LR_SPACE + optimizers)
    narrower = write_space(tmp_path, LR_SPACE.replace("1.0e-4", "1.0e-3") + optimizers, "n.yaml")
    fewer = write_space(tmp_path, LR_SPACE, "fewer.yaml")  # --optimizer becomes a train flag
    output = tmp_path / "runs"

    def sweep_argv(space_file: Path, *train: str) -> list[str]:
        flags = ["--space", str(space_file), "--trials", "1", "--output-dir", str(output)]
        return [*flags, "--", *train]

    open_study(sweep.parse_arguments(sweep_argv(space, "--epochs", "2")))
    # The same flags otherwise spelled, and one that changes only how a trial runs: continued.
    open_study(sweep.parse_arguments(sweep_argv(space, "--epochs=2", "--device", "cpu")))
    error = fails_with_one_line(capsys, sweep_argv(space, "--epochs", "3"))
    assert "other train flags (--epochs: then 2, now 3): pass the same flags after --" in error
    error = fails_with_one_line(capsys, sweep_argv(narrower, "--epochs", "2"))
    assert "--space differs from the one study" in error and "lr: then FloatDistribution(" in error
    error = fails_with_one_line(capsys, sweep_argv(fewer, "--epochs", "2"))
    assert "--space differs from the one study" in error and "optimizer: then Categorical" in error
    assert load_study(output).get_trials() == []
    assert list((output / "sweep" / "logs").iterdir()) == []


def test_a_train_run_folder_is_not_taken_for_a_study(tmp_path, capsys):
    space = write_space(tmp_path, LR_SPACE)
    run = tmp_path / "runs" / "exp"
    run.mkdir(parents=True)
    for name in ("config.yaml", "last.pt"):
        (run / name).write_text("a run's")
    argv = ["--space", str(space), "--trials", "1", "--output-dir", str(tmp_path / "runs")]
    error = fails_with_one_line(capsys, [*argv, "--study", "exp"])
    assert f"{run} is a train run's folder (last.pt, config.yaml), not a sweep's study" in error
    assert sorted(path.name for path in run.iterdir()) == ["config.yaml", "last.pt"]


def test_the_shipped_space_loads():
    args = sweep.parse_arguments(
        ["--space", str(PROJECT / "configs" / "sweep.yaml"), "--trials", "1"]
    )
    assert {"lr", "weight-decay", "optimizer"} <= set(args.space.distributions)
    assert (args.monitor, args.mode) == ("val_acc", "max")


@pytest.mark.slow
def test_parallel_sweep_finishes_its_trials_and_writes_best_yaml(tmp_path):
    space = write_space(
        tmp_path, LR_SPACE + "optimizer: {type: categorical, choices: [adamw, sgd]}\n"
    )
    output = tmp_path / "runs"
    run_sweep(space, output, ["--trials", "2", "--parallel", "2", "--pruner", "none"], QUICK)
    study = load_study(output)
    trials = study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 2
    assert sorted(trial.number for trial in trials) == [0, 1]
    for trial in trials:
        assert trial.user_attrs["run_dir"] == str(run_dir(output, trial.number))
        assert (run_dir(output, trial.number) / "metrics.jsonl").read_text().count("\n") == 1
    best = output / "sweep" / "best.yaml"
    config = parse_config(["--config", str(best), "--output-dir", str(tmp_path), "--name", "best"])
    assert config.optim.lr == study.best_params["lr"]
    assert config.optim.optimizer == study.best_params["optimizer"]
    assert config.data.fake_samples == 160  # the train flags after -- are kept too


@pytest.mark.slow
def test_sweeps_started_at_once_share_one_new_study(tmp_path):
    args = sweep.parse_arguments(["--trials", "1", "--output-dir", str(tmp_path)])
    start_together = threading.Barrier(4)
    errors = []

    def open_at_once() -> None:
        start_together.wait()
        try:
            open_study(args)
        except Exception as error:  # any failure to open the study is the bug
            errors.append(repr(error))

    threads = [threading.Thread(target=open_at_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(optuna.get_all_study_names(f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")) == 1


@pytest.mark.slow
def test_median_pruner_stops_a_poor_trial_which_saves_last_pt(tmp_path):
    output = tmp_path / "runs"
    space = write_space(tmp_path, "lr: {type: float, low: 1.0e-8, high: 4.0e-3, log: true}\n")
    (output / "sweep").mkdir(parents=True)
    storage = f"sqlite:///{output / 'sweep' / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="sweep", direction="maximize")
    # A trial that learns, then one that learns nothing where the first one learnt.
    study.enqueue_trial({"lr": 3e-3})
    study.enqueue_trial({"lr": 1e-7})
    pruning = ["--pruner-startup-trials", "1", "--pruner-warmup-epochs", "0"]
    run_sweep(space, output, ["--trials", "2", *pruning], DIGITS)
    first, second = load_study(output).get_trials()
    assert first.state == TrialState.COMPLETE and first.params["lr"] > 1e-3
    assert second.state == TrialState.PRUNED and second.params["lr"] < 1e-6
    assert (run_dir(output, 1) / "metrics.jsonl").read_text().count("\n") < 3  # of 3 epochs
    assert (run_dir(output, 1) / "last.pt").exists()


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited already


def children_of(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            children.add(int(stat.parent.name))
    return children


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lock_pid(folder: Path) -> int | None:
    """The pid of the training process that holds a run folder."""
    try:
        return json.loads((folder / ".lock").read_text())["pid"]
    except (OSError, ValueError):
        return None  # not locked, or the lock is being written


def epochs_recorded(folder: Path) -> int:
    try:
        return (folder / "metrics.jsonl").read_text().count("\n")
    except FileNotFoundError:
        return 0


def killable(study: optuna.Study, output: Path, sweep_process: subprocess.Popen):
    """A complete trial, and a running one whose training process holds its run folder with
    most of its epochs to go (so that it stops early only if told to)."""
    assert sweep_process.poll() is None, "the sweep ended before it could be killed"
    trials = study.get_trials()
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    running = [trial for trial in trials if trial.state == TrialState.RUNNING]
    folders = [run_dir(output, trial.number) for trial in running]
    training = [
        folder
        for folder in folders
        if lock_pid(folder) and epochs_recorded(folder) < LONG_RUN_EPOCHS // 2
    ]
    return (complete, running, training) if complete and training else None


def metrics_file(output: Path, number: int) -> tuple[bytes, int]:
    path = run_dir(output, number) / "metrics.jsonl"
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc, PR_SET_PDEATHSIG)")
def test_a_killed_sweep_leaves_no_training_and_continues_where_it_was(tmp_path):
    space = write_space(tmp_path, LR_SPACE)
    output = tmp_path / "runs"
    flags = ["--trials", "3", "--parallel", "2", "--pruner", "none"]
    # Seconds of training in which to kill the sweep.
    train = [*QUICK, "--epochs", str(LONG_RUN_EPOCHS)]
    process = subprocess.Popen(
        sweep_command(space, output, flags, train), env=environment(), stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: (output / "sweep" / "logs" / "trial-0000.txt").exists(), "a trial")
        study = load_study(output)
        complete, running, training = wait_for(
            lambda: killable(study, output, process), "a complete and a training trial"
        )
        sweep_pid = int(running[0].user_attrs["sweep"].split(":")[1])
        processes = children_of(sweep_pid) | {lock_pid(folder) for folder in training}
        os.kill(sweep_pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    wait_for(lambda: not any(map(process_alive, processes)), "no training left", timeout=120)
    for folder in training:  # stopped early by the SIGTERM the kernel sent: saved, not finished
        assert (folder / "last.pt").exists() and epochs_recorded(folder) < LONG_RUN_EPOCHS
    before = {
        trial.number: (trial.params, metrics_file(output, trial.number)) for trial in complete
    }

    run_sweep(space, output, flags, train)  # the same command again
    trials = {trial.number: trial for trial in load_study(output).get_trials()}
    done = [trial for trial in trials.values() if trial.state in FINISHED]
    assert len(done) == 3
    for number, (params, metrics) in before.items():
        assert trials[number].state == TrialState.COMPLETE
        assert (trials[number].params, metrics_file(output, number)) == (params, metrics)
    for trial in running:  # killed mid-training; one near its end may have finished first
        killed = run_dir(output, trial.number) in training
        expected = {TrialState.FAIL} if killed else {TrialState.FAIL, TrialState.COMPLETE}
        assert trials[trial.number].state in expected
    earlier_params = [params for params, _ in before.values()]
    assert not [
        trial for trial in done if trial.number not in before and trial.params in earlier_params
    ]
    for trial in done:  # each in its own run folder
        assert trial.user_attrs["run_dir"] == str(run_dir(output, trial.number))
        assert (run_dir(output, trial.number) / "metrics.jsonl").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc)")
def test_ctrl_c_stops_the_trials_which_save_and_the_sweep_exits_75(tmp_path):
    space = write_space(tmp_path, LR_SPACE)
    output = tmp_path / "runs"
    command = sweep_command(space, output, ["--trials", "2"], [*QUICK, "--epochs", "30"])
    process = subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: epochs_recorded(run_dir(output, 0)) or process.poll() is not None, "epoch")
    trial = load_study(output).get_trials()[0]
    os.kill(int(trial.user_attrs["sweep"].split(":")[1]), signal.SIGINT)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 75, stdout + stderr
    assert "run the same command again" in stderr.strip().splitlines()[-1]
    assert [trial.state for trial in load_study(output).get_trials()] == [TrialState.FAIL]
    assert (run_dir(output, 0) / "last.pt").exists() and epochs_recorded(run_dir(output, 0)) < 30
