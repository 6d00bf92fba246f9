"""What the best checkpoint makes of the validation split, once training has finished.

One float32 pass of best.pt's weights (the EMA's with --ema: what `evaluate` scores) over the
validation split gives two views: the penultimate features of up to --embeddings images for an
embedding projector, and the --mistakes most confident wrong predictions as a captioned
gallery. Both go to the run folder (embeddings/, mistakes.png) and to every logger. Only the
writing process does this, after the run's last collective, so no other rank waits for it.

The gallery's class names are drawn in a font that has their characters (pictures.label_font).
"""

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

from ..config.schema import Config, RunConfig
from ..data.labels import training_labels
from ..data.spec import DataSpec
from ..loggers.base import Embeddings, Mistake, RunLogger
from ..loggers.pictures import LINE_HEIGHT, MARGIN, fitted, label_font, unnormalised
from ..models import build_model, model_info
from ..runs.checkpoint import load_checkpoint, load_model_weights
from ..runs.preemption import StopRequest, ignore_stop_signals

SPRITE_LIMIT = 8192  # TensorBoard's projector draws sprites up to this many pixels a side
THUMBNAIL_SIDE = 32  # the largest sprite thumbnail
TILE_SIDE = 96  # a gallery image, enlarged or reduced to this
CAPTION_LINES = 3


@dataclass(frozen=True)
class SplitPredictions:
    """Every validation image's class and prediction, plus the features and thumbnails of the
    embedded ones, in split order."""

    targets: torch.Tensor
    predictions: torch.Tensor
    confidences: torch.Tensor  # the probability of the predicted class
    features: torch.Tensor
    thumbnails: torch.Tensor


def finished_training(run: RunConfig, training, stop: StopRequest) -> bool:
    """Every epoch trained, or early stopping ended it; not a --stop-after-epochs part of a run,
    nor one asked to stop after its last step (it may be about to be killed)."""
    done = training.progress.epoch >= run.epochs or training.stopper.should_stop
    return done and not stop.requested()


def record_insights_or_say_why(
    config: Config,
    training,
    device: torch.device,
    run_dir: Path,
    loggers: RunLogger,
    step: int,
    log: logging.Logger,
) -> None:
    """record_insights, whose failure is one line in the log and never the run's: the loggers'
    finish (best values, artifacts) and the ONNX export still follow."""
    try:
        record_insights(config, training, device, run_dir, loggers, step, log)
    except Exception as error:  # an extra view of a finished run; its checkpoints are complete
        reason = str(error).splitlines()[0] if str(error) else ""
        log.error(
            "the end-of-run embeddings and mistakes failed (%s: %s): the run and its checkpoints "
            "are complete; pass --embeddings 0 --mistakes 0 to leave them out",
            type(error).__name__,
            reason,
        )


def record_insights(
    config: Config,
    training,
    device: torch.device,
    run_dir: Path,
    loggers: RunLogger,
    step: int,
    log: logging.Logger,
) -> None:
    """Embeddings and mistakes of best.pt on the validation split, in run_dir and the loggers."""
    embedding_count, mistake_count = config.extras["embeddings"], config.extras["mistakes"]
    best = run_dir / "best.pt"
    if not (embedding_count or mistake_count):
        return
    if not best.exists():  # a branched run none of whose epochs beat its source checkpoint
        log.info("no best.pt in %s: no embeddings or mistakes to show", run_dir)
        return
    started = time.perf_counter()
    spec, memory_format = training.spec, training.memory_format
    model = inference_model(best, config.model.model, spec, device, memory_format)
    dataset = training.val_loader.dataset
    embedded = embedded_indices(training_labels(dataset), embedding_count)
    loader = whole_split_loader(training.val_loader)
    layer = model_info(config.model.model).embedding_layer(model)
    split = predict_split(model, loader, embedded, spec, memory_format, layer)
    if embedding_count:
        embeddings = embeddings_of(split, embedded, spec.class_names)
        record_embeddings(embeddings, run_dir / "embeddings", loggers, step, log)
    if mistake_count:
        mistakes = [
            mistake_at(index, split, dataset, spec)
            for index in most_confident_mistakes(split, mistake_count).tolist()
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
    embedding_layer: nn.Module,
) -> SplitPredictions:
    """One float32 pass in split order; `embedding_layer`'s input is the features."""
    device = next(model.parameters()).device
    is_embedded = torch.zeros(len(loader.dataset), dtype=torch.bool)
    is_embedded[embedded] = True
    side = thumbnail_side(spec.image_size, len(embedded))
    captured = []
    hook = embedding_layer.register_forward_pre_hook(
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
            thumbnails.append(
                F.resize(unnormalised(images[rows], spec), [side, side], antialias=True)
            )
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
        image=tile(unnormalised(image.unsqueeze(0), spec)[0]),
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
