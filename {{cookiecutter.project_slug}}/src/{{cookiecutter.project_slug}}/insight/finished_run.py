"""What the best checkpoint makes of the validation split, once training has finished.

One float32 pass of best.pt's weights (the EMA's with --ema: what `evaluate` scores) over the
validation split gives two views: the penultimate features of up to --embeddings samples for an
embedding projector, and the --mistakes most confident wrong predictions. The task says how a
sample is shown (Task.shown_sample): a picture has a thumbnail beside its point and a tile in a
captioned gallery (mistakes.png); a text labels its point and is a row of mistakes.csv. Both go
to the run folder (embeddings/ and the mistakes) and to every logger. Only the writing process
does this, after the run's last collective, so no other rank waits for it.

The gallery's class names are drawn in a font that has their characters (pictures.label_font).
"""

import csv
import functools
import logging
import math
import time
from collections.abc import Callable
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
from ..loggers.base import Embeddings, ExperimentLoggers, Mistake, RunLogger, one_line
from ..loggers.pictures import LINE_HEIGHT, MARGIN, fitted, label_font
from ..models import build_model, model_info
from ..runs.checkpoint import load_checkpoint, load_model_weights
from ..runs.preemption import StopRequest, ignore_stop_signals
from ..runs.runtime import to_device
from ..tasks.base import Task
from ..training.hooks import TrainingHook, register_hook
from ..training.loop import Training

SPRITE_LIMIT = 8192  # TensorBoard's projector draws sprites up to this many pixels a side
THUMBNAIL_SIDE = 32  # the largest sprite thumbnail
TILE_SIDE = 96  # a gallery image, enlarged or reduced to this
CAPTION_LINES = 3
POINT_LABEL_CHARACTERS = 80  # a text beside its point, cut to this
MISTAKE_FILES = ("mistakes.png", "mistakes.csv")  # pictures', texts'


@dataclass(frozen=True)
class SplitPredictions:
    """Every validation sample's class and prediction, plus the features of the embedded ones,
    in split order."""

    targets: torch.Tensor
    predictions: torch.Tensor
    confidences: torch.Tensor  # the probability of the predicted class
    features: torch.Tensor


@register_hook
class BestCheckpointInsights(TrainingHook):
    """record_insights once training has finished."""

    def after_training(self, stop: StopRequest, loggers: ExperimentLoggers) -> None:
        if finished_training(self.config.run, self.training, stop):
            device, step = self.runtime.device, self.training.progress.global_step
            record_insights_or_say_why(
                self.config, self.training, device, self.run_dir, loggers, step, self.log
            )


def finished_training(run: RunConfig, training: Training, stop: StopRequest) -> bool:
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
    dataset, task = training.val_loader.dataset, training.task
    embedded = embedded_indices(training_labels(dataset), embedding_count)
    split = best_predictions(best, config.model.model, training, device, embedded)
    class_names, noun = training.spec.class_names, task.input_names[1]
    show = functools.partial(task.shown_sample, dataset)
    if embedding_count:
        embeddings = embeddings_of(split, embedded, show, class_names)
        record_embeddings(embeddings, run_dir / "embeddings", loggers, step, log, noun)
    if mistake_count:
        wrong = most_confident_mistakes(split, mistake_count).tolist()
        mistakes = [mistake_at(index, split, show(index), class_names) for index in wrong]
        record_mistakes(mistakes, run_dir, loggers, step, log, noun)
    seconds = time.perf_counter() - started
    log.info("looked at best.pt on %d validation %s in %.1f s", len(dataset), noun, seconds)


def best_predictions(
    best: Path, model_name: str, training, device: torch.device, embedded: torch.Tensor
) -> SplitPredictions:
    """best.pt's pass over the whole validation split, in a model of its own."""
    memory_format = training.memory_format
    model = inference_model(best, model_name, training.spec, device, memory_format)
    layer = model_info(model_name).embedding_layer(model)
    loader = whole_split_loader(training.val_loader)
    return predict_split(model, training.task, loader, embedded, memory_format, layer)


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
        collate_fn=loader.collate_fn,
        worker_init_fn=ignore_stop_signals,
    )


@torch.no_grad()
def predict_split(
    model: nn.Module,
    task: Task,
    loader: DataLoader,
    embedded: torch.Tensor,
    memory_format: torch.memory_format,
    embedding_layer: nn.Module,
) -> SplitPredictions:
    """One float32 pass in split order; `embedding_layer`'s input is the features."""
    device = next(model.parameters()).device
    is_embedded = torch.zeros(len(loader.dataset), dtype=torch.bool)
    is_embedded[embedded] = True
    captured = []
    hook = embedding_layer.register_forward_pre_hook(
        lambda layer, inputs: captured.append(inputs[0])
    )
    targets, predictions, confidences, features = [], [], [], []
    start = 0
    try:
        for inputs, batch_targets in loader:
            rows = is_embedded[start : start + len(batch_targets)]
            start += len(batch_targets)
            logits = task.forward(model, to_device(inputs, device, memory_format)).float()
            confidence, predicted = logits.softmax(dim=1).max(dim=1)
            targets.append(batch_targets)
            predictions.append(predicted.cpu())
            confidences.append(confidence.cpu())
            features.append(captured.pop()[rows.to(device)].float().cpu())
    finally:
        hook.remove()
    return SplitPredictions(
        torch.cat(targets), torch.cat(predictions), torch.cat(confidences), torch.cat(features)
    )


def point_view(shown: torch.Tensor | str, count: int) -> torch.Tensor | str:
    """What a projector shows beside one of `count` points: a picture as a sprite thumbnail,
    a text on one line cut to POINT_LABEL_CHARACTERS."""
    if isinstance(shown, str):
        line = one_line(shown)
        cut = len(line) > POINT_LABEL_CHARACTERS
        return line[: POINT_LABEL_CHARACTERS - 1] + "…" if cut else line
    side = thumbnail_side(shown.shape[-1], count)
    return F.resize(shown, [side, side], antialias=True)


def thumbnail_side(picture_side: int, count: int) -> int:
    """A side that keeps the square sprite of `count` thumbnails within SPRITE_LIMIT."""
    per_row = math.ceil(math.sqrt(max(count, 1)))
    return max(1, min(picture_side, THUMBNAIL_SIDE, SPRITE_LIMIT // per_row))


def embeddings_of(
    split: SplitPredictions,
    embedded: torch.Tensor,
    show: Callable[[int], torch.Tensor | str],
    class_names: tuple[str, ...],
) -> Embeddings:
    """`show(index)`: the sample at `index` as the task shows it."""
    beside = [point_view(show(index), len(embedded)) for index in embedded.tolist()]
    texts = all(isinstance(view, str) for view in beside)
    return Embeddings(
        indices=embedded.tolist(),
        labels=[class_names[label] for label in split.targets[embedded].tolist()],
        predictions=[class_names[label] for label in split.predictions[embedded].tolist()],
        features=split.features,
        thumbnails=None if texts else torch.stack(beside),
        texts=beside if texts else None,
    )


def record_embeddings(
    embeddings: Embeddings,
    folder: Path,
    loggers: RunLogger,
    step: int,
    log: logging.Logger,
    noun: str,
) -> None:
    """`noun`: what the validation split holds, for the log ("images", "texts")."""
    write_embedding_files(embeddings, folder)
    loggers.log_embeddings(embeddings, step)
    count, dimensions = embeddings.features.shape
    log.info("features of %d validation %s (%d dimensions): %s", count, noun, dimensions, folder)


def write_embedding_files(embeddings: Embeddings, folder: Path) -> None:
    """features.tsv (one row of floats per sample) and metadata.tsv (a header, then one row per
    sample): the files TensorBoard's projector and projector.tensorflow.org load."""
    folder.mkdir(exist_ok=True)
    np.savetxt(folder / "features.tsv", embeddings.features.numpy(), fmt="%.6g", delimiter="\t")
    rows = [list(embeddings.columns), *embeddings.metadata()]
    lines = "".join("\t".join(row) + "\n" for row in rows)
    (folder / "metadata.tsv").write_text(lines, encoding="utf-8")


def most_confident_mistakes(split: SplitPredictions, count: int) -> torch.Tensor:
    """Positions of up to `count` wrong predictions, the most confident first (ties: in split
    order)."""
    wrong = (split.predictions != split.targets).nonzero().flatten()
    order = torch.argsort(split.confidences[wrong], descending=True, stable=True)
    return wrong[order][:count]


def mistake_at(
    index: int, split: SplitPredictions, shown: torch.Tensor | str, class_names: tuple[str, ...]
) -> Mistake:
    """`shown`: the sample as the task shows it (a picture becomes a gallery tile)."""
    is_text = isinstance(shown, str)
    return Mistake(
        index=index,
        label=class_names[int(split.targets[index])],
        prediction=class_names[int(split.predictions[index])],
        probability=float(split.confidences[index]),
        image=None if is_text else tile(shown),
        text=shown if is_text else None,
    )


def tile(picture: torch.Tensor) -> Image.Image:
    """A picture as a gallery tile; enlarged small images keep their pixels sharp."""
    image = F.to_pil_image(picture).convert("RGB")
    enlarging = image.width < TILE_SIDE
    resampling = Image.Resampling.NEAREST if enlarging else Image.Resampling.BILINEAR
    return image.resize((TILE_SIDE, TILE_SIDE), resampling)


def record_mistakes(
    mistakes: list[Mistake],
    run_dir: Path,
    loggers: RunLogger,
    step: int,
    log: logging.Logger,
    noun: str,
) -> None:
    """`noun`: what the validation split holds, for the log ("images", "texts")."""
    for name in MISTAKE_FILES:  # one left by an earlier invocation of this run
        (run_dir / name).unlink(missing_ok=True)
    if not mistakes:
        log.info("best.pt predicts all validation %s right: no mistakes to show", noun)
        return
    if mistakes[0].text is None:
        grid, path = gallery(mistakes), run_dir / "mistakes.png"
        grid.save(path)
    else:
        grid, path = None, run_dir / "mistakes.csv"
        write_mistakes_table(mistakes, path)
    loggers.log_mistakes(mistakes, grid, step)
    log.info("the %d most confident mistakes of best.pt: %s", len(mistakes), path)


def write_mistakes_table(mistakes: list[Mistake], path: Path) -> None:
    """A header of Mistake.COLUMNS, then one row per mistake; the csv module quotes the texts
    that hold commas, quotes or line breaks, which csv readers then read back whole."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(Mistake.COLUMNS)
        writer.writerows(mistake.table_row() for mistake in mistakes)


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
