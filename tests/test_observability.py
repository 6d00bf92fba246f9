"""What a user sees while training and what they ship: read back with the real clients."""

import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import (
    INSIGHT,
    project_environment,
    read_metrics,
    run_command,
    tiny_run,
    train_command,
)
from options import SLUG

BASE = {"mixed_precision": "no", "multi_gpu": "none", "onnx_export": "no"}
RUN = tiny_run("--log-every", "2", "--name", "run", epochs=2)
EPOCHS, STEP_POINTS, CLASSES = 2, 4, 10


def train_run(project: Path, python: list[str], output: Path, *flags: str, **env: str) -> Path:
    command = [*train_command(python), *RUN, "--output-dir", str(output), *flags]
    result = run_command(command, project, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    return output / "run"


@pytest.fixture(scope="module")
def tensorboard_run(render, preloaded_python, tmp_path_factory) -> Path:
    project = render(logger="tensorboard", **BASE)
    output = tmp_path_factory.mktemp("tensorboard")
    return train_run(project, preloaded_python, output, "--histogram-every", "1")


def test_tensorboard_event_files_hold_every_tag(tensorboard_run):
    keep_all = {"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    events = EventAccumulator(str(tensorboard_run / "tensorboard"), size_guidance=keep_all)
    events.Reload()
    tags = events.Tags()
    epoch_scalars = ["loss/train", "loss/val", "accuracy/train", "accuracy/val"]
    epoch_scalars += ["accuracy/val_top5", "lr/epoch", "throughput/samples_per_second"]
    for tag in epoch_scalars:
        assert len(events.Scalars(tag)) == EPOCHS, tag
    for tag in ("loss/train_step", "lr/step"):
        assert len(events.Scalars(tag)) == STEP_POINTS, tag
    assert len(events.Images("inputs/train_batch")) == 1
    assert len(events.Images("val/confusion_matrix")) == EPOCHS
    assert tags["graph"] is True
    pr_curves = events.PluginTagToContent("pr_curves")
    per_class_acc = read_metrics(tensorboard_run)[-1]["per_class_acc"]
    with_images = [index for index, accuracy in enumerate(per_class_acc) if accuracy is not None]
    assert 0 < len(with_images) < CLASSES  # the fake split leaves a class without images
    assert set(pr_curves) == {f"pr/{index}" for index in with_images}
    assert all(len(events.Tensors(tag)) == EPOCHS for tag in pr_curves)
    histograms = [tag for tag in tags["histograms"] if tag.startswith("weights/")]
    assert histograms and all(len(events.Histograms(tag)) == EPOCHS for tag in histograms)
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert len(events.Scalars("hparam/val_acc")) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, deadline: float):
    """GET a JSON document, retrying while the server is still starting."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_live_tensorboard_server_serves_the_scalars(tensorboard_run):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tensorboard_run)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/data/plugin/scalars"
        tags = get_json(f"{base}/tags", deadline=time.monotonic() + 90)
        (run,) = [name for name in tags if "loss/val" in tags[name]]
        assert {"loss/train", "accuracy/val", "lr/epoch"} <= tags[run].keys()
        points = get_json(f"{base}/scalars?run={run}&tag=loss/val", time.monotonic() + 10)
        assert [step for _, step, _ in points] == [STEP_POINTS, 2 * STEP_POINTS]
    finally:
        server.terminate()
        server.wait(timeout=30)


def wandb_records(path: Path):
    """Decode a .wandb file (a LevelDB-style log of protobuf Records) into Records."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, offset, pieces = 32768, 7, []
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        length, kind = struct.unpack_from("<HB", data, offset + 4)
        pieces.append(data[offset + 7 : offset + 7 + length])
        offset += 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST piece of a split one
            record = Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record


def items(entries) -> dict:
    """Key/value items of a wandb record, keys as written by the run."""
    return {
        entry.key or "/".join(entry.nested_key): json.loads(entry.value_json) for entry in entries
    }


def test_wandb_offline_run_records_config_metrics_summary_and_artifact(
    render, preloaded_python, tmp_path
):
    project = render(logger="wandb", **BASE)
    flags = ["--wandb-project", "template-tests", *INSIGHT]
    run_dir = train_run(project, preloaded_python, tmp_path, *flags, WANDB_MODE="offline")
    (log_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(log_file))
    runs = [record.run for record in records if record.HasField("run")]
    assert runs[0].project == "template-tests" and runs[0].display_name == "run"
    config = items(runs[0].config.update)
    assert config["lr"] == 0.003 and config["dataset"] == "fake"
    history = [items(record.history.item) for record in records if record.HasField("history")]
    epochs = [row for row in history if "val_acc" in row]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert [row["_step"] for row in epochs] == [4, 8]
    summary = {}
    for record in records:
        if record.HasField("summary"):
            summary.update(items(record.summary.update))
    assert summary["best_val_acc"] == max(row["val_acc"] for row in epochs)
    artifacts = [record.artifact for record in records if record.HasField("artifact")]
    assert [artifact.type for artifact in artifacts] == ["run_table", "model"]  # embeddings
    assert [entry.path for entry in artifacts[1].manifest.contents] == ["best.pt"]


def test_wandb_project_defaults_to_the_package_in_a_deeply_nested_folder(
    render, preloaded_python, tmp_path, monkeypatch
):
    # wandb's own default project name is made from the working folder's path: over 128
    # characters it refuses to start.
    deep = tmp_path.joinpath(*["nested-folder"] * 10) / "project"
    shutil.copytree(render(logger="wandb", **BASE), deep)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    run_dir = train_run(deep, preloaded_python, deep / "runs", WANDB_MODE="offline")
    (log_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    runs = [record.run for record in wandb_records(log_file) if record.HasField("run")]
    assert runs[0].project == SLUG


def train_online(project: Path, home: Path, **wandb_env: str) -> subprocess.CompletedProcess:
    """The default training command with wandb online: no WANDB_MODE, no inherited key."""
    env = project_environment(project, HOME=str(home))
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", f"{SLUG}.train", "--output-dir", str(home / "runs")],
        cwd=project,
        env={**env, **wandb_env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wandb_without_a_key_fails_in_one_line_before_writing(render, tmp_path):
    result = train_online(render(logger="wandb", **BASE), tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: wandb has no API key: run `wandb login` or set WANDB_API_KEY, "
        "or set WANDB_MODE=offline to log locally and `wandb sync` later"
    ]
    assert not (tmp_path / "runs").exists()


def test_wandb_without_network_fails_in_one_line_before_writing(render, tmp_path):
    """A server that accepts connections and never answers: what a dead proxy or firewall does."""
    project = render(logger="wandb", **BASE)
    with socket.socket() as silent_server:
        silent_server.bind(("127.0.0.1", 0))
        silent_server.listen()
        url = f"http://127.0.0.1:{silent_server.getsockname()[1]}"
        started = time.monotonic()
        result = train_online(project, tmp_path, WANDB_API_KEY="0" * 40, WANDB_BASE_URL=url)
        seconds = time.monotonic() - started
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: wandb server {url} did not answer within 10 s (")
    assert line.endswith("or set WANDB_MODE=offline to log locally and `wandb sync` later")
    assert seconds < 40, f"{seconds:.0f} s"  # a bound, not a benchmark: wandb alone waits ~100 s
    assert not (tmp_path / "runs").exists()


def event_steps(events: EventAccumulator, tag: str) -> list[int]:
    return [point.step for point in events.Scalars(tag)]


def test_resumed_run_logs_each_step_once_and_continues_the_wandb_run(
    render, preloaded_python, tmp_path
):
    """The run dies after logging epoch 2 but before its checkpoint lands (here: last.pt is put
    back to epoch 1), then resumes: epoch 2 is trained again and must appear once, as retrained."""
    project = render(logger="both", **BASE)

    def train(*flags: str) -> Path:
        return train_run(
            project, preloaded_python, tmp_path, "--epochs", "3", *flags, WANDB_MODE="offline"
        )

    run_dir = train("--stop-after-epochs", "1")
    shutil.copy(run_dir / "last.pt", tmp_path / "epoch1.pt")
    train("--resume", "auto", "--stop-after-epochs", "1")
    shutil.copy(tmp_path / "epoch1.pt", run_dir / "last.pt")
    train("--resume", "auto")

    records = read_metrics(run_dir)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert event_steps(events, "loss/train") == [4, 8, 12]
    assert event_steps(events, "loss/train_step") == [2, 4, 6, 8, 10, 12]
    assert event_steps(events, "epoch") == [4, 8, 12]
    logged = [point.value for point in events.Scalars("loss/train")]
    assert logged == pytest.approx([record["train_loss"] for record in records], rel=1e-6)

    run_files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 3
    run_ids = {
        record.run.run_id
        for path in run_files
        for record in wandb_records(path)
        if record.HasField("run")
    }
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    assert run_ids == {checkpoint["loggers"]["wandb_run_id"]}
    history = [
        items(record.history.item)
        for record in wandb_records(run_files[-1])
        if record.HasField("history")
    ]
    assert [row["epoch"] for row in history if "val_acc" in row] == [2, 3]

    train("--epochs", "4", "--resume", str(run_dir / "last.pt"), "--name", "branch")
    (branch_file,) = (tmp_path / "branch" / "wandb").glob("offline-run-*/run-*.wandb")
    branch_runs = [record.run for record in wandb_records(branch_file) if record.HasField("run")]
    assert branch_runs[0].run_id not in run_ids  # a branch is a wandb run of its own


def test_logger_none_still_records_every_metric(render, preloaded_python, tmp_path):
    project = render(logger="none", **BASE)
    run_dir = train_run(project, preloaded_python, tmp_path)
    records = read_metrics(run_dir)
    assert [record["epoch"] for record in records] == [1, 2]
    expected = {"train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "lr", "step"}
    expected |= {"samples_per_second", "epoch_seconds", "per_class_acc"}
    assert expected <= records[0].keys()
    log = (run_dir / "train.log").read_text()
    assert "Total params" in log  # the model summary
    assert log.count(" INFO epoch ") == EPOCHS


def test_evaluate_prints_and_saves_the_report(render, preloaded_python, tmp_path):
    project = render(logger="none", **BASE)
    run_dir = train_run(project, preloaded_python, tmp_path)
    output = tmp_path / "reports" / "new" / "report.json"  # its folder is created
    command = [*preloaded_python, "-m", f"{SLUG}.evaluate", "--checkpoint"]
    command += [str(run_dir / "best.pt"), "--output", str(output)]
    result = run_command(command, project)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    matrix = report["confusion_matrix"]
    assert sum(map(sum, matrix)) == 32  # every validation sample, once
    for index, row in enumerate(matrix):
        expected = row[index] / sum(row) if sum(row) else None  # no images: no accuracy
        assert report["per_class_acc"][index] == pytest.approx(expected)
    assert report["val_acc"] == pytest.approx(sum(row[i] for i, row in enumerate(matrix)) / 32)
    assert "confusion matrix" in result.stdout and f"top-1 {report['val_acc']:.4f}" in result.stdout
