"""The bad-input catalogue: every mistake gets one clear line, a non-zero exit, no traceback,
and leaves everything that existed before exactly as it was."""

import hashlib
import io
import json
import os
import socket
import unicodedata
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import run_command, tiny_run, train_command
from options import SLUG

TINY = tiny_run()


def write_images(folder: Path, count: int = 3, mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new(mode, (10, 10), color=index * 40).save(folder / f"{index}.png")


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    noise = torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8, generator=torch.Generator())
    Image.fromarray(noise.numpy()).save(buffer, "JPEG")
    return buffer.getvalue()[:-300]


def truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, "PNG")
    return buffer.getvalue()[:70]


# Each setup gets the case's scratch root and a `train(flags)` helper, prepares what the case
# needs, and returns the flags of the failing command.


def flags(*values: str):
    return lambda root, train: list(values)


def image_folder(*classes: str, **extra_files: bytes):
    """root/data/<class>/*.png, plus extra files given as {"<class>/<name>": bytes}."""

    def setup(root: Path, train) -> list[str]:
        (root / "data").mkdir(exist_ok=True)
        for name in classes:
            write_images(root / "data" / name)
        for relative, content in extra_files.items():
            (root / "data" / relative).write_bytes(content)
        return ["--dataset", "image_folder", "--data-dir", str(root / "data"), "--image-size", "8"]

    return setup


def class_without_images(root: Path, train) -> list[str]:
    (root / "data" / "bird").mkdir(parents=True)
    (root / "data" / "bird" / "readme.txt").write_text("no images here")
    return image_folder("cat", "dog")(root, train)


def config_file(text: str):
    def setup(root: Path, train) -> list[str]:
        (root / "config.yaml").write_text(text)
        return ["--config", str(root / "config.yaml")]

    return setup


def config_bytes(content: bytes):
    def setup(root: Path, train) -> list[str]:
        (root / "config.yaml").write_bytes(content)
        return ["--config", str(root / "config.yaml")]

    return setup


def written_file(flag: str, write):
    """`flag` naming a file that `write` made in the scratch folder."""

    def setup(root: Path, train) -> list[str]:
        write(root / "checkpoint.pt")
        return [flag, str(root / "checkpoint.pt")]

    return setup


def resume_previous_run(*run_flags: str, truncated: bool = False):
    """Train a run with `run_flags` first, then resume from its (possibly cut) last.pt."""

    def setup(root: Path, train) -> list[str]:
        train(["--output-dir", str(root / "runs"), "--name", "previous", *TINY, *run_flags])
        last = root / "runs" / "previous" / "last.pt"
        if truncated:
            cut = root / "cut.pt"
            cut.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
            return ["--resume", str(cut)]
        return ["--resume", str(last)]

    return setup


def existing_run(root: Path, train) -> list[str]:
    train(["--output-dir", str(root / "runs"), "--name", "run", *TINY])
    return ["--name", "run"]


def resume_into_another_run(root: Path, train) -> list[str]:
    for name in ("a", "b"):
        train(["--output-dir", str(root / "runs"), "--name", name, *TINY])
    return ["--resume", str(root / "runs" / "a" / "last.pt"), "--name", "b"]


def resume_best_in_place(root: Path, train) -> list[str]:
    train(["--output-dir", str(root / "runs"), "--name", "a", *TINY])
    return ["--resume", str(root / "runs" / "a" / "best.pt"), "--name", "a"]


def best_without_last(root: Path, train) -> list[str]:
    train(["--output-dir", str(root / "runs"), "--name", "a", *TINY])
    (root / "runs" / "a" / "last.pt").unlink()
    return ["--name", "a", "--resume", "auto"]


def locked_run(root: Path, train) -> list[str]:
    (root / "runs" / "a").mkdir(parents=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname()}  # this test: alive
    (root / "runs" / "a" / ".lock").write_text(json.dumps(owner))
    return ["--name", "a"]


def output_in_a_file(root: Path, train) -> list[str]:
    (root / "notes.txt").write_text("not a folder")
    return ["--output-dir", str(root / "notes.txt" / "runs")]


def resume_on_a_folder_with_more_classes(root: Path, train) -> list[str]:
    """The class count is refused before any image is opened: the broken one is never read."""
    for name in ("cat", "dog"):
        write_images(root / "photos" / name, count=4)
    for name in ("cat", "dog", "bird"):
        write_images(root / "more" / name, count=4)
    (root / "more" / "bird" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    folder = ["--dataset", "image_folder", "--image-size", "8", "--batch-size", "2"]
    checkpoint = trained_run(root, train, *folder, "--data-dir", str(root / "photos"))
    last = checkpoint.with_name("last.pt")
    return ["--resume", str(last), "--name", "b", *folder, "--data-dir", str(root / "more")]


def unreachable_url() -> str:
    """An http URL on loopback where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def study_folder(root: Path, train) -> list[str]:
    (root / "runs" / "sweep").mkdir(parents=True)
    for name in ("study.db", "study.lock"):
        (root / "runs" / "sweep" / name).write_bytes(b"")
    return ["--name", "sweep"]


def cifar10_download_offline(root: Path, train) -> tuple[list[str], dict]:
    proxy = unreachable_url()
    flags = ["--dataset", "cifar10", "--download", "--data-dir", str(root / "cifar")]
    return flags, {"https_proxy": proxy, "HTTPS_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}


def wandb_server_unreachable(root: Path, train) -> tuple[list[str], dict]:
    env = {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": unreachable_url(), "WANDB_MODE": "online"}
    return [], env


def with_flags(setup, *extra: str):
    """`setup`'s flags followed by `extra`."""
    return lambda root, train: [*setup(root, train), *extra]


def resume_without_a_class_of_its_recorded_split(root: Path, train) -> list[str]:
    """A run's carved split is recorded; every training image of one class is deleted since."""
    for name in ("cat", "dog"):
        write_images(root / "photos" / name, count=4)
    folder = ["--dataset", "image_folder", "--data-dir", str(root / "photos")]
    folder += ["--image-size", "8", "--batch-size", "2"]
    run_dir = trained_run(root, train, *folder).parent
    recorded = json.loads((run_dir / "split.json").read_text())
    for relative, name in recorded["train"].items():
        if name == "cat":
            (root / "photos" / relative).unlink()
    return ["--name", "a", "--resume", "auto", *folder]


def one_image_per_class(root: Path, train) -> list[str]:
    for name in ("cat", "dog"):
        write_images(root / "data" / name, count=1)
    return ["--dataset", "image_folder", "--data-dir", str(root / "data"), "--image-size", "8"]


def resume_on_a_copy_with_a_class_renamed(root: Path, train) -> list[str]:
    """Same class count, other names: the model's outputs would go to other classes."""
    for name in ("cat", "dog"):
        write_images(root / "photos" / name, count=4)
    folder = ["--dataset", "image_folder", "--image-size", "8", "--batch-size", "2"]
    checkpoint = trained_run(root, train, *folder, "--data-dir", str(root / "photos"))
    write_images(root / "copy" / "cat", count=4)
    write_images(root / "copy" / "bear", count=4)
    last = checkpoint.with_name("last.pt")
    return ["--resume", str(last), "--name", "b", *folder, "--data-dir", str(root / "copy")]


CASES = {
    "epochs zero": (flags("--epochs", "0"), "--epochs: must be a positive whole number"),
    "epochs not a number": (flags("--epochs", "ten"), "--epochs: must be a whole number"),
    "negative batch size": (flags("--batch-size", "-4"), "--batch-size: must be a positive"),
    "zero learning rate": (flags("--lr", "0"), "--lr: must be a positive finite number"),
    "nan learning rate": (flags("--lr", "nan"), "--lr: must be a positive finite number"),
    "unknown dataset": (flags("--dataset", "imagenet"), "--dataset: invalid choice"),
    "unknown model": (flags("--model", "vgg"), "--model: invalid choice"),
    "unknown device": (flags("--device", "tpu"), "--device must be auto, cpu, cuda"),
    "cuda without a gpu": (flags("--device", "cuda"), "no CUDA GPU is visible"),
    "both warmups": (flags("--warmup-epochs", "1", "--warmup-steps", "5"), "not both"),
    "both warmups in a config": (
        config_file("warmup-epochs: 2\nwarmup-steps: 5\n"),
        "give --warmup-epochs or --warmup-steps, not both",
    ),
    "missing config file": (flags("--config", "nope.yaml"), "cannot read --config nope.yaml"),
    "config with an unknown key": (config_file("epochz: 3\n"), "unknown key 'epochz'"),
    "config with a bad value": (config_file("epochs: -1\n"), "epochs must be a positive"),
    "config that is not a mapping": (config_file("- 1\n- 2\n"), "must hold a mapping"),
    "config of binary garbage": (config_bytes(b"\x00\xff\xfe\x80 garbage"), "is not a text file"),
    "config with a number as the name": (config_file("name: 123\n"), "name must be text, got 123"),
    "config with a null value": (config_file("epochs:\n"), "epochs has no value"),
    "config with a number as the device": (config_file("device: 5\n"), "device must be text"),
    "config with a number to resume": (config_file("resume: 5\n"), "resume must be text"),
    "config with a key given twice": (
        config_file("epochs: 3\nlr: 0.1\nepochs: 4\n"),
        "key 'epochs' appears twice",
    ),
    "label smoothing of 5": (flags("--label-smoothing", "5"), "must be at least 0 and below 1"),
    "one-pixel images": (flags("--image-size", "1"), "must be at least 8 pixels"),
    "one fake class": (flags("--fake-classes", "1"), "must be at least 2"),
    "final LR above the peak": (flags("--min-lr", "0.5", "--lr", "0.1"), "--min-lr 0.5 is above"),
    "warmup as long as training": (
        flags("--warmup-epochs", "3", "--epochs", "3"),
        "--warmup-epochs 3 leaves no epoch of the 3",
    ),
    "amp dtype without amp": (flags("--amp-dtype", "float16"), "has no effect without --amp"),
    "EMA decay of 1": (flags("--ema", "1"), "--ema: must be 0 (off) or a decay below 1"),
    "EMA decay that is not a number": (flags("--ema", "high"), "--ema: must be a number"),
    "unknown class weights": (flags("--class-weights", "inverse"), "--class-weights: invalid"),
    "class weights and balanced sampling": (
        flags("--class-weights", "auto", "--balanced-sampling"),
        "--balanced-sampling already gives every class the same weight",
    ),
    "config with a number to compile": (config_file("compile: 1\n"), "compile must be true or"),
    "Grad-CAM of the mlp": (
        flags("--model", "mlp", "--cam-every", "1"),
        "--model mlp has no spatial feature map for Grad-CAM: drop --cam-every",
    ),
    "negative Grad-CAM interval": (flags("--cam-every", "-1"), "--cam-every: must be zero or more"),
    "resume with another EMA decay": (
        resume_previous_run("--ema", "0.9"),
        "was trained with --ema 0.9",
    ),
    "name climbing out of the output folder": (flags("--name", "../escaped"), "plain folder name"),
    "absolute name": (flags("--name", "/tmp/elsewhere"), "plain folder name"),
    "image_folder without a folder": (flags("--dataset", "image_folder"), "needs --data-dir"),
    "missing data folder": (
        flags("--dataset", "image_folder", "--data-dir", "no/such/dir"),
        "no/such/dir does not exist or is not a folder: check --data-dir",
    ),
    "empty data folder": (image_folder(), "has no class folders"),
    "class folder without images": (class_without_images, "bird has no images"),
    "only one class": (image_folder("cat"), "has only one class (cat)"),
    "corrupt image": (
        image_folder("cat", "dog", **{"cat/broken.png": b"\x89PNG\r\n\x1a\n garbage"}),
        "cat/broken.png (",
    ),
    "zero-byte image": (image_folder("cat", "dog", **{"dog/empty.jpg": b""}), "empty.jpg"),
    "truncated image": (image_folder("cat", "dog", **{"cat/cut.png": truncated_png()}), "cut.png"),
    "garbage posing as an image": (
        image_folder("cat", "dog", **{"dog/fake.jpg": b"GIF89a not really"}),
        "1 unreadable image(s)",
    ),
    "truncated JPEG (its header is fine)": (
        image_folder("cat", "dog", **{"cat/cut.jpg": truncated_jpeg()}),
        "cat/cut.jpg (image file is truncated",
    ),
    "split folders mixed with class folders": (
        image_folder("train/cat", "train/dog", "dog"),
        "mixes split folders (train) with other folders (dog)",
    ),
    "val and test folders but no train": (
        image_folder("val/cat", "val/dog", "test/cat", "test/dog"),
        "has test, val but no train folder",
    ),
    "test split without a class of train": (
        image_folder("train/cat", "train/dog", "test/cat"),
        "test differ from",
    ),
    "batch larger than the dataset": (
        flags("--fake-samples", "100", "--batch-size", "512"),
        "--batch-size 512 is larger than the training set",
    ),
    "resume a missing file": (flags("--resume", "missing.pt"), "missing.pt does not exist"),
    "resume a truncated checkpoint": (
        resume_previous_run(truncated=True),
        "is truncated or not a PyTorch checkpoint",
    ),
    "resume a non-checkpoint file": (
        written_file("--resume", lambda path: path.write_text("just text")),
        "is truncated or not a PyTorch checkpoint",
    ),
    "resume a tensor file": (
        written_file("--resume", lambda path: torch.save(torch.zeros(3), path)),
        "is not a checkpoint written by this project",
    ),
    "resume a checkpoint of another model": (
        resume_previous_run("--model", "mlp"),
        "was trained with --model mlp",
    ),
    "resume a checkpoint with another class count": (
        resume_previous_run("--fake-classes", "4"),
        "is a simple_cnn for 4 classes, but this data has 10",
    ),
    "resume on a photo folder with more classes": (
        resume_on_a_folder_with_more_classes,
        "is a simple_cnn for 2 classes, but this data has 3",
    ),
    "resume a checkpoint of another optimizer": (
        resume_previous_run("--optimizer", "sgd"),
        "was trained with --optimizer sgd",
    ),
    "resume with another image size": (
        resume_previous_run("--image-size", "16"),
        "was trained with --image-size 16",
    ),
    "existing run folder without --resume": (existing_run, "pass --resume auto to continue it"),
    "resume another run's checkpoint into an existing run": (
        resume_into_another_run,
        "holds another run than",
    ),
    "resume best.pt into its own run": (resume_best_in_place, "holds another run than"),
    "resume auto where only best.pt is left": (best_without_last, "has no last.pt to continue"),
    "run folder locked by a live process": (locked_run, "is in use by process"),
    "output folder inside a file": (output_in_a_file, "(Not a directory): pick a writable"),
    "--dp inside a torchrun launch": (flags("--dp"), "--dp cannot be combined with a torchrun"),
    "cifar10 --download without a network": (cifar10_download_offline, "could not download"),
    "wandb server unreachable": (wandb_server_unreachable, "did not answer within 10 s"),
    "run named after a sweep's study folder": (study_folder, "is a sweep's study folder"),
    "val and dev folders both": (
        image_folder("train/cat", "train/dog", "val/cat", "val/dog", "dev/cat", "dev/dog"),
        "has 2 val folders (dev, val;",
    ),
    "validation share leaving a class no training image": (
        with_flags(image_folder("cat", "dog"), "--val-fraction", "0.9"),
        "class cat would have no training images: --val-fraction 0.9 holds out all 3",
    ),
    "every image of a class skipped as unreadable": (
        with_flags(
            image_folder("cat", "dog", **{f"dog/{index}.png": b"garbage" for index in range(3)}),
            "--skip-bad-images",
        ),
        "class dog has no readable image left in",
    ),
    "one class folder name in two Unicode forms": (
        image_folder(*(unicodedata.normalize(form, "café") for form in ("NFC", "NFD")), "dog"),
        "two class folders named café",
    ),
    "resume after a class's recorded training images were deleted": (
        resume_without_a_class_of_its_recorded_split,
        "class cat has no training image left of this run's recorded split",
    ),
    "one image per class: none to hold out for validation": (
        one_image_per_class,
        "the validation split has no images (--val-fraction holds images out only of classes",
    ),
    "resume on a copy of the folder with a class renamed": (
        resume_on_a_copy_with_a_class_renamed,
        "was trained on the classes cat, dog, but",
    ),
    "resume with another seed": (resume_previous_run("--seed", "3"), "was trained with --seed 3"),
    "resume with another validation share": (
        resume_previous_run("--val-fraction", "0.5"),
        "was trained with --val-fraction 0.5",
    ),
    "pretrained weights of a model that has none": (
        flags("--model", "simple_cnn", "--pretrained"),
        "--pretrained: simple_cnn has no pretrained weights; drop --pretrained",
    ),
    "a metric the task does not compute": (
        flags("--monitor", "val_f1"),
        "--monitor val_f1 is not a metric of image_classification: pick one of val_loss, val_acc",
    ),
}
# Cases that need another rendering than the catalogue's default one.
ANSWERS = {"wandb server unreachable": {"logger": "wandb"}}


def trained_run(root: Path, train, *run_flags: str) -> Path:
    """Train runs/a (tiny, fake data unless `run_flags` say otherwise); its best.pt."""
    train(["--output-dir", str(root / "runs"), "--name", "a", *TINY, *run_flags])
    return root / "runs" / "a" / "best.pt"


def with_checkpoint(*extra: str):
    """--checkpoint of a freshly trained run, plus `extra` flags (ROOT in them: the scratch)."""

    def setup(root: Path, train) -> list[str]:
        checkpoint = trained_run(root, train)
        return [
            "--checkpoint",
            str(checkpoint),
            *(flag.replace("ROOT", str(root)) for flag in extra),
        ]

    return setup


def output_folder(root: Path, train) -> list[str]:
    (root / "reports").mkdir()
    return with_checkpoint("--output", "ROOT/reports")(root, train)


def output_onto_the_checkpoint(root: Path, train) -> list[str]:
    return with_checkpoint("--output", "ROOT/runs/a/best.pt")(root, train)


def output_inside_a_file(root: Path, train) -> list[str]:
    (root / "notes.txt").write_text("not a folder")
    return with_checkpoint("--output", "ROOT/notes.txt/out")(root, train)


def folder_with_other_classes(root: Path, train) -> list[str]:
    for name in ("cat", "dog"):
        write_images(root / "photos" / name, count=4)
    for name in ("cat", "bird"):
        write_images(root / "other" / name)
    checkpoint = trained_run(
        root,
        train,
        "--dataset",
        "image_folder",
        "--data-dir",
        str(root / "photos"),
        "--batch-size",
        "2",
    )
    return ["--checkpoint", str(checkpoint), "--data-dir", str(root / "other")]


SHARED_CHECKPOINT_CASES = {
    "no --checkpoint": (flags(), "the following arguments are required: --checkpoint"),
    "missing checkpoint": (flags("--checkpoint", "missing.pt"), "missing.pt does not exist"),
    "text file as checkpoint": (
        written_file("--checkpoint", lambda path: path.write_text("just text")),
        "is truncated or not a PyTorch checkpoint",
    ),
    "tensor file as checkpoint": (
        written_file("--checkpoint", lambda path: torch.save(torch.zeros(3), path)),
        "is not a checkpoint written by this project",
    ),
    "--output onto a folder": (output_folder, "is a folder: give a file path"),
    "--output inside a file": (output_inside_a_file, "cannot create the folder of --output"),
    "--output onto the checkpoint": (output_onto_the_checkpoint, "is the checkpoint itself"),
}
EVALUATE_CASES = {
    **SHARED_CHECKPOINT_CASES,
    "batch size zero": (
        flags("--checkpoint", "best.pt", "--batch-size", "0"),
        "--batch-size: must be a positive",
    ),
    "unknown split": (flags("--checkpoint", "best.pt", "--split", "train"), "invalid choice"),
    "test split the data lacks": (with_checkpoint("--split", "test"), "has no test split"),
    "data folder with other classes": (folder_with_other_classes, "missing dog; extra bird"),
}
EXPORT_CASES = {
    **SHARED_CHECKPOINT_CASES,
    "unknown flag": (flags("--checkpoint", "best.pt", "--opset", "9"), "unrecognized arguments"),
    "--output without .onnx": (
        flags("--checkpoint", "best.pt", "--output", "out/model"),
        "--output out/model must end in .onnx",
    ),
}


def with_images(setup):
    """`setup`'s flags after a folder of images to predict."""

    def setup_with_images(root: Path, train) -> list[str]:
        write_images(root / "images")
        return [str(root / "images"), *setup(root, train)]

    return setup_with_images


def predicting(*images: str, csv_exists: bool = False):
    """`images` (ROOT in them: the scratch), the --checkpoint of a freshly trained run and
    --output ROOT/out.csv (already there with `csv_exists`)."""

    def setup(root: Path, train) -> list[str]:
        write_images(root / "images")
        if csv_exists:
            (root / "out.csv").write_text("earlier results\n")
        checkpoint = trained_run(root, train)
        paths = [image.replace("ROOT", str(root)) for image in images]
        return [*paths, "--checkpoint", str(checkpoint), "--output", str(root / "out.csv")]

    return setup


def empty_image_folder(root: Path, train) -> list[str]:
    (root / "empty").mkdir()
    return predicting("ROOT/empty")(root, train)


def text_as_onnx(root: Path, train) -> list[str]:
    (root / "model.onnx").write_text("just text")
    return ["--checkpoint", str(root / "model.onnx")]


def onnx_model_without_its_suffix(root: Path, train) -> list[str]:
    (root / "model").write_bytes(b"\x08\x08\x12\x07pytorch")  # how an exported model begins
    return ["--checkpoint", str(root / "model")]


def sweep_study_as_checkpoint(root: Path, train) -> list[str]:
    study_folder(root, train)
    return ["--checkpoint", str(root / "runs" / "sweep")]


PREDICT_CASES = {
    name: (with_images(SHARED_CHECKPOINT_CASES[name][0]), SHARED_CHECKPOINT_CASES[name][1])
    for name in (
        "no --checkpoint",
        "missing checkpoint",
        "text file as checkpoint",
        "tensor file as checkpoint",
    )
}
PREDICT_CASES |= {
    "text posing as model.onnx": (with_images(text_as_onnx), "is not an ONNX model"),
    "top-k zero": (with_images(flags("--checkpoint", "best.pt", "--top-k", "0")), "--top-k: must"),
    "missing image path": (predicting("ROOT/missing.jpg"), "missing.jpg does not exist"),
    "folder without images": (empty_image_folder, "has no image files"),
    "existing CSV without --overwrite": (
        predicting("ROOT/images", csv_exists=True),
        "out.csv exists: pass --overwrite",
    ),
    "ONNX model without .onnx": (
        with_images(onnx_model_without_its_suffix),
        "and not named *.onnx as an ONNX model must be",
    ),
    "sweep's study folder as checkpoint": (
        with_images(sweep_study_as_checkpoint),
        "holds no best.pt or last.pt, so is not a run folder",
    ),
}


def text_file(content: bytes, name: str = "texts.csv"):
    """--dataset text_files on one file holding `content` (in a text render)."""

    def setup(root: Path, train) -> list[str]:
        (root / name).write_bytes(content)
        return ["--dataset", "text_files", "--data-dir", str(root / name)]

    return setup


def text_trained_with(*run_flags: str):
    """A text run trained under runs/a, then resumed with `run_flags`."""

    def setup(root: Path, train) -> list[str]:
        train([*TEXT_TINY, "--output-dir", str(root / "runs"), "--name", "a"])
        return ["--name", "a", "--resume", "auto", "--epochs", "2", *run_flags]

    return setup


def other_tokenizer(root: Path, train) -> list[str]:
    from tokenizers import Tokenizer, models

    words = models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hallo": 2}, unk_token="[UNK]")
    (root / "other.json").write_text(Tokenizer(words).to_str())
    return text_trained_with("--tokenizer", str(root / "other.json"))(root, train)


TEXT_TINY = ["--vocab-size", "300", "--epochs", "1", "--no-progress", "--warmup-epochs", "0"]
TEXT_CASES = {
    "text: empty file": (text_file(b""), "texts.csv is empty"),
    "text: no text column": (text_file(b"review,label\nok,en\nja,de\n"), "has no text column"),
    "text: no label column": (text_file(b"text,lang\nok,en\nja,de\n"), "has no label column"),
    "text: one class": (text_file(b"text,label\ngood,en\nfine,en\n"), "has only one class"),
    "text: not UTF-8": (
        text_file("text,label\nguten Tag,de\ncaf\u00e9,fr\n".encode("latin-1")),
        "is not UTF-8 text: line 3",
    ),
    "text: a 10 MB line": (
        text_file(b"text,label\n" + b"x" * 10_000_000 + b",en\nja,de\n"),
        "holds a text of 10,000,000 characters",
    ),
    "text: max length 0": (flags("--max-length", "0"), "--max-length: must be at least 2"),
    "text: vocabulary too small": (
        flags("--vocab-size", "299"),
        "--vocab-size: must be at least 300",
    ),
    "text: broken tokenizer": (
        lambda root, train: (
            (root / "t.json").write_text('{"model": ') and ["--tokenizer", str(root / "t.json")]
        ),
        "cannot read tokenizer",
    ),
    "text: resumed with another tokenizer": (other_tokenizer, "was trained with no --tokenizer"),
    "text: resumed with another vocabulary": (
        text_trained_with("--vocab-size", "400"),
        "was trained with --vocab-size 300",
    ),
}
ANSWERS |= {name: {"task": "text_classification"} for name in TEXT_CASES}
COMMANDS = {
    "train": CASES,
    "train-text": TEXT_CASES,
    "evaluate": EVALUATE_CASES,
    "export": EXPORT_CASES,
    "predict": PREDICT_CASES,
}
# What torchrun exports to its workers, so the check runs without a process group.
TORCHRUN_ENV = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file()
    }


def failing_command(python: list[str], command: str, root: Path) -> list[str]:
    if command == "train":
        return [*train_command(python), *TINY, "--output-dir", str(root / "runs")]
    if command == "train-text":
        return [*train_command(python), *TEXT_TINY, "--output-dir", str(root / "runs")]
    return [*python, "-m", f"{SLUG}.{command}"]


@pytest.mark.parametrize(
    "command, name", [(command, name) for command, cases in COMMANDS.items() for name in cases]
)
def test_bad_input_gets_one_clear_line(render, preloaded_python, tmp_path, command, name):
    project = render(multi_gpu="both", **ANSWERS.get(name, {}))
    setup, message = COMMANDS[command][name]

    def train(run_flags: list[str]) -> None:
        result = run_command([*train_command(preloaded_python), *run_flags], project)
        assert result.returncode == 0, result.stderr[-2000:]

    case_flags = setup(tmp_path, train)
    case_flags, env = case_flags if isinstance(case_flags, tuple) else (case_flags, {})
    if "--dp" in case_flags:
        env = TORCHRUN_ENV
    before = snapshot(tmp_path)
    failing = failing_command(preloaded_python, command, tmp_path)
    result = run_command([*failing, *case_flags], project, **env)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    assert message in error_lines[0]
    assert snapshot(tmp_path) == before  # nothing changed, no run folder or log left behind


def test_float16_on_cpu_warns_and_trains(render, preloaded_python, tmp_path):
    """Documented choice: float16 autocast on CPU runs (emulated, slow) with a warning."""
    project = render(multi_gpu="both")
    command = [*train_command(preloaded_python), *TINY, "--output-dir", str(tmp_path)]
    result = run_command([*command, "--amp", "--amp-dtype", "float16"], project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "float16 autocast on CPU is emulated and slow" in result.stderr


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    render, preloaded_python, tmp_path
):
    project = render(multi_gpu="both")
    # The learning rate grows 1e20-fold after epoch 1: epoch 1 trains and saves, epoch 2 diverges.
    flags = ["--scheduler", "step", "--step-size", "1", "--gamma", "1e20", "--warmup-epochs", "0"]
    command = [*train_command(preloaded_python), *TINY, "--epochs", "3", *flags]
    result = run_command([*command, "--output-dir", str(tmp_path), "--name", "nan"], project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "by step 8 (epoch 2)" in error
    assert error.endswith(f"; the last checkpoint, {tmp_path}/nan/last.pt, is intact")
    checkpoint = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())


def test_nan_loss_before_any_checkpoint_says_none_was_saved(render, preloaded_python, tmp_path):
    project = render(multi_gpu="both")
    command = [*train_command(preloaded_python), *TINY, "--lr", "1e30"]
    result = run_command([*command, "--output-dir", str(tmp_path), "--name", "nan"], project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "(epoch 1)" in error and error.endswith("; no checkpoint was saved yet")
    assert not (tmp_path / "nan" / "last.pt").exists()
