"""What the best checkpoint makes of the validation split, once training has finished; and the
pictures of a validation split the loggers draw.

One float32 pass of best.pt's weights (the EMA's with --ema: what `evaluate` scores) over the
validation split gives two views: the penultimate features of up to --embeddings images for an
embedding projector, and the --mistakes most confident wrong predictions as a captioned
gallery. Both go to the run folder (embeddings/, mistakes.png) and to every logger. Only the
writing process does this, after the run's last collective, so no other rank waits for it.

Pictures are drawn with Pillow, class names in a font that has their characters (label_font);
a confusion matrix shows at most SHOWN_CLASSES classes, so that drawing it every epoch costs
the same few milliseconds whatever the class count.
"""

import importlib.util
import logging
import math
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

from .checkpoint import load_checkpoint, load_model_weights
from .config import Config
from .data import DataSpec, training_labels
from .engine import Training
from .loggers.base import Embeddings, Mistake, RunLogger
from .models import build_model, classifier_layer
from .preemption import ignore_stop_signals

SPRITE_LIMIT = 8192  # TensorBoard's projector draws sprites up to this many pixels a side
THUMBNAIL_SIDE = 32  # the largest sprite thumbnail
TILE_SIDE = 96  # a gallery image, enlarged or reduced to this
CAPTION_LINES = 3
LINE_HEIGHT = 12
MARGIN = 4
FONT_SIZE = 10
NO_GLYPH = "\U0010fffd"  # a private-use code point: every font draws its missing-glyph shape
SHOWN_CLASSES = 20  # a confusion matrix beyond this many classes shows the most confused
LABEL_WIDTH = 140  # the most pixels a class name takes beside or above a confusion matrix
BLUES = ((247, 251, 255), (8, 48, 107))  # the colours of no and of the most images


@dataclass(frozen=True)
class SplitPredictions:
    """Every validation image's class and prediction, plus the features and thumbnails of the
    embedded ones, in split order."""

    targets: torch.Tensor
    predictions: torch.Tensor
    confidences: torch.Tensor  # the probability of the predicted class
    features: torch.Tensor
    thumbnails: torch.Tensor


def record_insights(
    config: Config,
    training: Training,
    device: torch.device,
    run_dir: Path,
    loggers: RunLogger,
    step: int,
    log: logging.Logger,
) -> None:
    """Embeddings and mistakes of best.pt on the validation split, in run_dir and the loggers."""
    wanted = config.insight
    best = run_dir / "best.pt"
    if not (wanted.embeddings or wanted.mistakes):
        return
    if not best.exists():  # a branched run none of whose epochs beat its source checkpoint
        log.info("no best.pt in %s: no embeddings or mistakes to show", run_dir)
        return
    started = time.perf_counter()
    spec, memory_format = training.spec, training.memory_format
    model = inference_model(best, config.model.model, spec, device, memory_format)
    dataset = training.val_loader.dataset
    embedded = embedded_indices(training_labels(dataset), wanted.embeddings)
    loader = whole_split_loader(training.val_loader)
    split = predict_split(model, loader, embedded, spec, memory_format)
    if wanted.embeddings:
        embeddings = embeddings_of(split, embedded, spec.class_names)
        record_embeddings(embeddings, run_dir / "embeddings", loggers, step, log)
    if wanted.mistakes:
        mistakes = [
            mistake_at(index, split, dataset, spec)
            for index in most_confident_mistakes(split, wanted.mistakes).tolist()
        ]
        record_mistakes(mistakes, run_dir / "mistakes.png", loggers, step, log)
    seconds = time.perf_counter() - started
    log.info("looked at best.pt on %d validation images in %.1f s", len(dataset), seconds)


def inference_model(
    checkpoint: Path,
    name: str,
    spec: DataSpec,
    device: torch.device,
    memory_format: torch.memory_format,
) -> nn.Module:
    """The checkpoint's weights as `evaluate` loads them, in a model of their own (not compiled,
    not wrapped: the run's model keeps its state)."""
    model = build_model(name, spec)
    load_model_weights(model, load_checkpoint(checkpoint), checkpoint, for_inference=True)
    return model.to(device, memory_format=memory_format).eval()


def embedded_indices(labels: torch.Tensor, cap: int) -> torch.Tensor:
    """Up to `cap` positions in the split, in order: all of them, or else each class's first
    images in turn, so that every class has as many as the cap allows."""
    positions = torch.arange(len(labels))
    if len(labels) <= cap:
        return positions
    by_class = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    class_starts = counts.cumsum(0) - counts
    place_in_class = torch.empty_like(positions)
    place_in_class[by_class] = positions - class_starts[labels[by_class]]
    in_turn = torch.argsort(place_in_class * len(labels) + positions)
    return in_turn[:cap].sort().values


def whole_split_loader(loader: DataLoader) -> DataLoader:
    """`loader` when it serves its whole split (one process), else a loader that does."""
    if len(loader.sampler) == len(loader.dataset):
        return loader
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        worker_init_fn=ignore_stop_signals,
    )


@torch.no_grad()
def predict_split(
    model: nn.Module,
    loader: DataLoader,
    embedded: torch.Tensor,
    spec: DataSpec,
    memory_format: torch.memory_format,
) -> SplitPredictions:
    """One float32 pass in split order; the classifier layer's input is the features."""
    device = next(model.parameters()).device
    is_embedded = torch.zeros(len(loader.dataset), dtype=torch.bool)
    is_embedded[embedded] = True
    side = thumbnail_side(spec.image_size, len(embedded))
    captured = []
    hook = classifier_layer(model).register_forward_pre_hook(
        lambda layer, inputs: captured.append(inputs[0])
    )
    targets, predictions, confidences, features, thumbnails = [], [], [], [], []
    start = 0
    try:
        for images, batch_targets in loader:
            rows = is_embedded[start : start + len(images)]
            start += len(images)
            logits = model(images.to(device, memory_format=memory_format)).float()
            confidence, predicted = logits.softmax(dim=1).max(dim=1)
            targets.append(batch_targets)
            predictions.append(predicted.cpu())
            confidences.append(confidence.cpu())
            features.append(captured.pop()[rows.to(device)].float().cpu())
            thumbnails.append(F.resize(pictures(images[rows], spec), [side, side], antialias=True))
    finally:
        hook.remove()
    return SplitPredictions(
        torch.cat(targets),
        torch.cat(predictions),
        torch.cat(confidences),
        torch.cat(features),
        torch.cat(thumbnails),
    )


def thumbnail_side(image_size: int, count: int) -> int:
    """A side that keeps the square sprite of `count` thumbnails within SPRITE_LIMIT."""
    per_row = math.ceil(math.sqrt(max(count, 1)))
    return max(1, min(image_size, THUMBNAIL_SIDE, SPRITE_LIMIT // per_row))


def pictures(images: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Normalised model inputs back as pictures with values in [0, 1]."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def embeddings_of(
    split: SplitPredictions, embedded: torch.Tensor, class_names: tuple[str, ...]
) -> Embeddings:
    return Embeddings(
        indices=embedded.tolist(),
        labels=[class_names[label] for label in split.targets[embedded].tolist()],
        predictions=[class_names[label] for label in split.predictions[embedded].tolist()],
        features=split.features,
        thumbnails=split.thumbnails,
    )


def record_embeddings(
    embeddings: Embeddings, folder: Path, loggers: RunLogger, step: int, log: logging.Logger
) -> None:
    write_embedding_files(embeddings, folder)
    loggers.log_embeddings(embeddings, step)
    count, dimensions = embeddings.features.shape
    log.info("features of %d validation images (%d dimensions): %s", count, dimensions, folder)


def write_embedding_files(embeddings: Embeddings, folder: Path) -> None:
    """features.tsv (one row of floats per image) and metadata.tsv (a header, then one row per
    image): the files TensorBoard's projector and projector.tensorflow.org load."""
    folder.mkdir(exist_ok=True)
    np.savetxt(folder / "features.tsv", embeddings.features.numpy(), fmt="%.6g", delimiter="\t")
    rows = [list(Embeddings.COLUMNS), *embeddings.metadata()]
    (folder / "metadata.tsv").write_text("".join("\t".join(row) + "\n" for row in rows))


def most_confident_mistakes(split: SplitPredictions, count: int) -> torch.Tensor:
    """Positions of up to `count` wrong predictions, the most confident first (ties: in split
    order)."""
    wrong = (split.predictions != split.targets).nonzero().flatten()
    order = torch.argsort(split.confidences[wrong], descending=True, stable=True)
    return wrong[order][:count]


def mistake_at(index: int, split: SplitPredictions, dataset, spec: DataSpec) -> Mistake:
    image, _ = dataset[index]
    return Mistake(
        index=index,
        label=spec.class_names[int(split.targets[index])],
        prediction=spec.class_names[int(split.predictions[index])],
        probability=float(split.confidences[index]),
        image=tile(pictures(image.unsqueeze(0), spec)[0]),
    )


def tile(picture: torch.Tensor) -> Image.Image:
    """A picture as a gallery tile; enlarged small images keep their pixels sharp."""
    image = F.to_pil_image(picture).convert("RGB")
    enlarging = image.width < TILE_SIDE
    resampling = Image.Resampling.NEAREST if enlarging else Image.Resampling.BILINEAR
    return image.resize((TILE_SIDE, TILE_SIDE), resampling)


def record_mistakes(
    mistakes: list[Mistake], path: Path, loggers: RunLogger, step: int, log: logging.Logger
) -> None:
    if not mistakes:
        path.unlink(missing_ok=True)  # one left by an earlier invocation of this run
        log.info("best.pt predicts every validation image right: no mistakes to show")
        return
    grid = gallery(mistakes)
    grid.save(path)
    loggers.log_mistakes(mistakes, grid, step)
    log.info("the %d most confident mistakes of best.pt: %s", len(mistakes), path)


def gallery(mistakes: list[Mistake]) -> Image.Image:
    """The tiles in a square-ish grid, each captioned below with its true class, predicted
    class and that prediction's probability."""
    columns = math.ceil(math.sqrt(len(mistakes)))
    rows = math.ceil(len(mistakes) / columns)
    cell_width, cell_height = gallery_cell()
    grid = Image.new("RGB", (columns * cell_width, rows * cell_height), "white")
    draw = ImageDraw.Draw(grid)
    font = label_font(name for mistake in mistakes for name in (mistake.label, mistake.prediction))
    for position, mistake in enumerate(mistakes):
        row, column = divmod(position, columns)
        left, top = column * cell_width + MARGIN, row * cell_height + MARGIN
        grid.paste(mistake.image, (left, top))
        lines = (
            f"true {mistake.label}",
            f"predicted {mistake.prediction}",
            f"probability {mistake.probability:.2f}",
        )
        for number, line in enumerate(lines):
            position_of_line = (left, top + TILE_SIDE + 1 + number * LINE_HEIGHT)
            text = fitted(font.drawable(line), draw, font.font, TILE_SIDE)
            draw.text(position_of_line, text, fill="black", font=font.font)
    return grid


def gallery_cell() -> tuple[int, int]:
    """The width and height of one captioned tile in the gallery, margins included."""
    return TILE_SIDE + 2 * MARGIN, TILE_SIDE + CAPTION_LINES * LINE_HEIGHT + 2 * MARGIN


def fitted(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    """`text`, cut short with "..." where it would run past `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


@dataclass(frozen=True)
class LabelFont:
    """A font for class names, and the characters it has no glyph for (written as code points,
    such as <U+732B>, rather than drawn as boxes)."""

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    missing: frozenset[str]

    def drawable(self, text: str) -> str:
        return "".join(f"<U+{ord(char):04X}>" if char in self.missing else char for char in text)


def label_font(texts: Iterable[str], size: int = FONT_SIZE) -> LabelFont:
    """The first font with a glyph for every character of `texts`: DejaVu Sans (Latin, Greek,
    Cyrillic and more), else an installed font that fontconfig finds for them, else Pillow's
    own; when none has them all, the one that lacks fewest."""
    characters = {char for text in texts for char in text if not char.isspace()}
    best = None
    for font in candidate_fonts(characters, size):
        missing = frozenset(missing_glyphs(font, characters))
        if best is None or len(missing) < len(best.missing):
            best = LabelFont(font, missing)
        if not missing:
            break
    return best


def candidate_fonts(characters: set[str], size: int):
    """Fonts to try, in order, each loaded when asked for: fontconfig is asked only when DejaVu
    Sans lacks a character."""
    yield from truetype_fonts([*bundled_dejavu_sans(), "DejaVuSans.ttf"], size)
    yield from truetype_fonts(fontconfig_fonts(characters), size)
    yield ImageFont.load_default()


def truetype_fonts(paths: list[str], size: int):
    for path in paths:
        try:  # a bare file name is looked for in the system's font folders
            yield ImageFont.truetype(path, size)
        except OSError:
            continue


def bundled_dejavu_sans() -> list[str]:
    """The copy of DejaVu Sans that matplotlib ships, when it is installed (not imported)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return []
    return [str(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")]


def fontconfig_fonts(characters: set[str]) -> list[str]:
    """Installed fonts that have every character beyond ASCII, as fontconfig lists them (none
    where fontconfig is not installed)."""
    wanted = sorted(f"{ord(char):x}" for char in characters if not char.isascii())
    if not wanted or shutil.which("fc-list") is None:
        return []
    command = ["fc-list", "--format=%{file}\n", f":charset={' '.join(wanted)}"]
    try:
        listed = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    fonts = [path for path in listed.splitlines() if path.endswith((".ttf", ".otf", ".ttc"))]
    return sorted(fonts)


def missing_glyphs(font, characters: set[str]) -> set[str]:
    """The characters `font` draws as it draws a code point no font has: its missing glyph."""
    no_glyph = glyph_pixels(font, NO_GLYPH)
    return {char for char in characters if glyph_pixels(font, char) in (None, no_glyph)}


def glyph_pixels(font, char: str) -> bytes | None:
    """`char` drawn alone, or None where the font cannot draw it (Pillow's bitmap font cannot
    encode it, or an installed font fails to render)."""
    canvas = Image.new("L", (3 * FONT_SIZE, 3 * FONT_SIZE))
    try:
        ImageDraw.Draw(canvas).text((FONT_SIZE, FONT_SIZE), char, fill=255, font=font)
    except (UnicodeEncodeError, OSError):
        return None
    return canvas.tobytes()


def shown_classes(matrix: torch.Tensor, limit: int = SHOWN_CLASSES) -> list[int]:
    """Every class when there are at most `limit`; else the `limit` with the most errors (their
    images predicted as another class, and other images predicted as them), in class order."""
    if len(matrix) <= limit:
        return list(range(len(matrix)))
    errors = matrix.sum(dim=0) + matrix.sum(dim=1) - 2 * matrix.diagonal()
    return sorted(torch.argsort(errors, descending=True, stable=True)[:limit].tolist())


def confusion_picture(
    matrix: torch.Tensor, shown: list[int], class_names: tuple[str, ...], font: LabelFont
) -> Image.Image:
    """The rows and columns `shown` (see shown_classes) of the confusion matrix (rows: true
    class, columns: predicted), each cell with its count and shaded by it. A class without
    validation images is labelled so (its row is empty, not wrong)."""
    counts = matrix[shown][:, shown]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [
        class_names[index] + ("" if matrix[index].sum() else " (no images)") for index in shown
    ]
    labels = [fitted(font.drawable(label), measure, font.font, LABEL_WIDTH) for label in labels]
    label_width = max(math.ceil(measure.textlength(label, font=font.font)) for label in labels)
    label_width += 6
    cell = max(20, math.ceil(measure.textlength(str(int(counts.max())), font=font.font)) + 6)
    title_height, side = 2 * LINE_HEIGHT, len(shown) * cell
    top = title_height + label_width
    picture = Image.new("RGB", (label_width + side + MARGIN, top + side + MARGIN), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((MARGIN, MARGIN), confusion_title(len(shown), len(matrix)), "black", font.font)
    strip = class_labels_strip(labels, cell, label_width, font.font)
    picture.paste(strip, (label_width, title_height))
    for row, label in enumerate(labels):
        middle = top + row * cell + cell // 2
        draw.text((label_width - 3, middle), label, "black", font.font, anchor="rm")
    draw_cells(draw, counts, (label_width, top), cell, font.font)
    return picture


def draw_cells(draw: ImageDraw.ImageDraw, counts: torch.Tensor, origin, cell: int, font) -> None:
    """Each count in its square cell, shaded by its share of the largest count; cells of no
    images are left blank, which also keeps drawing a sparse matrix quick."""
    side = len(counts) * cell
    draw.rectangle((*origin, origin[0] + side, origin[1] + side), fill=shade(0.0))
    scale = max(int(counts.max()), 1)
    for row, column in counts.nonzero().tolist():
        count = int(counts[row, column])
        left, top = origin[0] + column * cell, origin[1] + row * cell
        share = count / scale
        draw.rectangle((left, top, left + cell, top + cell), fill=shade(share))
        colour = "white" if share > 0.5 else "black"
        middle = (left + cell // 2, top + cell // 2)
        draw.text(middle, str(count), colour, font, anchor="mm")


def confusion_title(shown: int, classes: int) -> str:
    which = "" if shown == classes else f"the {shown} most confused of {classes} classes; "
    return f"{which}rows: true class, columns: predicted"


def class_labels_strip(labels: list[str], cell: int, width: int, font) -> Image.Image:
    """The labels turned a quarter left, each over its column, reading upwards from the top of
    the matrix."""
    strip = Image.new("RGB", (width, len(labels) * cell), "white")
    draw = ImageDraw.Draw(strip)
    for row, label in enumerate(labels):
        draw.text((3, row * cell + cell // 2), label, "black", font, anchor="lm")
    return strip.rotate(90, expand=True)


def shade(share: float) -> tuple[int, int, int]:
    """From white-blue (no images) to dark blue (the most)."""
    low, high = BLUES
    return tuple(round(a + (b - a) * share) for a, b in zip(low, high, strict=True))
