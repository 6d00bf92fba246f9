import csv
{% if cookiecutter.task == "image_classification" -%}
import io
{% endif -%}
import json
from pathlib import Path

{% if cookiecutter.task == "image_classification" -%}
import numpy as np
{% endif -%}
import pytest
import torch
{%- if cookiecutter.task == "image_classification" %}
from PIL import Image
{%- endif %}

{% if cookiecutter.task == "text_classification" -%}
from {{ cookiecutter.project_slug }}.datasets.languages import messages
{% endif -%}
from {{ cookiecutter.project_slug }}.train import main as train_main
{%- if cookiecutter.task == "image_classification" %}

# A second or two per run: tiny synthetic data; test_train.py also trains on digits.
QUICK = ["--dataset", "fake", "--fake-samples", "160", "--image-size", "8", "--batch-size", "32"]
QUICK += ["--epochs", "1", "--warmup-epochs", "0", "--no-progress"]
{%- else %}

# About a second per run (on 2 CPU cores): one epoch of the bag of embeddings on the embedded
# languages data (5.9k short texts in 9 languages) with a small vocabulary.
QUICK = ["--dataset", "languages", "--vocab-size", "300", "--batch-size", "64"]
QUICK += ["--epochs", "1", "--warmup-epochs", "0", "--no-progress"]
{%- endif %}
{%- if cookiecutter.insight == "yes" %}
# The end-of-run embeddings and mistakes are off: tests that look at them switch them on.
QUICK += ["--embeddings", "0", "--mistakes", "0"]
INSIGHT = ("--embeddings", "1000", "--mistakes", "16")  # the defaults
{%- endif %}


@pytest.fixture
def train(tmp_path):
    """Run the train command in-process under tmp_path; return the run folder."""

    def run(*flags: str, name: str = "run") -> Path:
        exit_code = train_main([*QUICK, "--output-dir", str(tmp_path), "--name", name, *flags])
        assert exit_code == 0
        return tmp_path / name

    return run
{%- if cookiecutter.task == "image_classification" %}


PREDICT_CLASSES = ("cat", "dog", "fox")


def noise_image(shape: tuple[int, ...], label: int, seed: int) -> np.ndarray:
    """Random pixels with the class's colour channel turned up (in colour images)."""
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    if len(shape) == 3:
        pixels[..., label] = 255
    return pixels


def write_images_to_predict(folder: Path) -> None:
    """<class>/ folders of readable images in several modes and formats (one JPEG large enough
    to be decoded at reduced scale), and beside them a truncated PNG, text posing as a JPEG and
    a text file."""
    images = {
        "cat/rgb.png": Image.fromarray(noise_image((16, 20, 3), 0, 1)),
        "cat/grey.png": Image.fromarray(noise_image((18, 18), 0, 2)),
        "dog/rgba.png": Image.fromarray(noise_image((20, 16, 4), 1, 3)),
        "dog/photo.jpg": Image.fromarray(noise_image((80, 96, 3), 1, 4)),
        "fox/palette.gif": Image.fromarray(noise_image((16, 16, 3), 2, 5)).convert("P"),
    }
    for name, image in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
    png = io.BytesIO()
    Image.fromarray(noise_image((16, 16, 3), 0, 6)).save(png, "PNG")
    (folder / "broken.png").write_bytes(png.getvalue()[:100])
    (folder / "fake.jpg").write_text("not a picture")
    (folder / "notes.txt").write_text("not an image either")


@pytest.fixture(scope="session")
def predict_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, images to predict): a tiny --ema run on a folder of 16 px photos of
    PREDICT_CLASSES, and the folder write_images_to_predict fills."""
    root = tmp_path_factory.mktemp("predict")
    for label, name in enumerate(PREDICT_CLASSES):
        (root / "photos" / name).mkdir(parents=True)
        for index in range(6):
            pixels = noise_image((16, 20, 3), label, 10 * label + index)
            Image.fromarray(pixels).save(root / "photos" / name / f"{index}.png")
    write_images_to_predict(root / "images")
    data = ["--dataset", "image_folder", "--data-dir", str(root / "photos"), "--image-size", "16"]
    flags = [*QUICK, *data, "--batch-size", "4", "--ema", "0.9", "--output-dir", str(root)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        assert train_main([*flags, "--name", "run"]) == 0
    return root / "run", root / "images"
{%- else %}


def language_rows(languages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(message, language) pairs: real text, the interface messages Django ships translated (the
    languages dataset's source), in a stable order."""
    return [(text, language) for text, language in messages() if language in languages]


def write_table(path: Path, rows: list[tuple[str, str]], columns=("text", "label")) -> Path:
    """A CSV file of (text, label) rows under a header of `columns`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def small_table(tmp_path_factory) -> Path:
    """A CSV of 285 real messages: every seventh German, English and French one."""
    rows = language_rows(("de", "en", "fr"))[::7]
    return write_table(tmp_path_factory.mktemp("small") / "messages.csv", rows)


@pytest.fixture(scope="session")
def small_data(small_table) -> list[str]:
    """Flags for small_table, cut to 32 tokens: nine batches of 32 an epoch, for the slower
    models and runs."""
    data = ["--dataset", "text_files", "--data-dir", str(small_table)]
    return [*data, "--batch-size", "32", "--max-length", "32"]
{%- endif %}


def predicted(csv_file: Path) -> dict[str, dict[str, float]]:
    """predict's CSV as {path: {class: probability}}, read from its top_k column."""
    with open(csv_file, newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        row["path"]: {
            name: float(value)
            for name, value in (entry.rsplit(":", 1) for entry in row["top_k"].split(";"))
        }
        for row in rows
    }


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def load_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip, saying why, where no CUDA GPU is visible."""
    if torch.cuda.is_available():
        return
    needs_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(needs_gpu)
