"""The events a run reports, and the registry of what records them.

Every registered logger type is built for the writing process of each run, with the same
arguments: metrics.jsonl always, and each chosen tracker or artifact writer registers itself
with `register_logger` when its feature module is imported.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
{%- if cookiecutter.insight == "yes" %}
from PIL import Image
{%- endif %}
from torch import nn

from ..config.schema import Config
from ..data.spec import DataSpec


@dataclass(frozen=True)
class Figure:
    """Captioned pictures a training hook draws after an epoch's validation, as the loggers
    receive them: say, the same validation samples as that epoch's model sees them."""

    name: str  # what it shows: the trackers' key <name>/val
    epoch: int
    panels: list[torch.Tensor]  # (3, H, W) uint8 each: a sample as drawn, with its caption
    captions: list[str]  # one per panel
    grid: torch.Tensor  # (3, H, W) uint8: every panel in one picture


{%- if cookiecutter.insight == "yes" %}


@dataclass(frozen=True)
class Embeddings:
    """Penultimate features of validation samples, with what a projector shows beside them:
    their classes, and each picture's thumbnail or each text (on one short line)."""

    indices: list[int]
    labels: list[str]
    predictions: list[str]
    features: torch.Tensor  # (N, D), float32
    thumbnails: torch.Tensor | None = None  # pictures: (N, C, side, side) in [0, 1]
    texts: list[str] | None = None  # texts: one line each, without tabs

    @property
    def columns(self) -> tuple[str, ...]:
        """metadata's: the position in the split, the text (TensorBoard's projector labels the
        points with the first column that is not numbers), the class names."""
        return ("index", *(() if self.texts is None else ("text",)), "label", "prediction")

    def metadata(self) -> list[list[str]]:
        """One row of columns per sample."""
        texts = [(text,) for text in self.texts] if self.texts else [()] * len(self.indices)
        rows = zip(self.indices, texts, self.labels, self.predictions, strict=True)
        return [[str(index), *text, label, prediction] for index, text, label, prediction in rows]


@dataclass(frozen=True)
class Mistake:
    """A validation sample predicted wrong, and how sure the model was of its wrong class; a
    picture comes as a gallery tile, a text as written."""

    COLUMNS = ("text", "true", "predicted", "confidence")  # a text's row in tables

    index: int  # position in the validation split
    label: str
    prediction: str
    probability: float
    image: Image.Image | None = None  # RGB, a gallery tile's size
    text: str | None = None

    @property
    def caption(self) -> str:
        return f"true {self.label}, predicted {self.prediction} ({self.probability:.2f})"

    def table_row(self) -> list:
        """A text's mistake as a row of COLUMNS."""
        return [self.text, self.label, self.prediction, round(self.probability, 4)]


def one_line(text: str) -> str:
    """`text` with each run of whitespace (line breaks, tabs) as one space: fit for a TSV cell
    or a table row."""
    return " ".join(text.split())


# Shown verbatim by Python-Markdown (which renders TensorBoard's text summaries): its markup
# characters escaped, and the start of an entity or a tag written as an entity.
MARKDOWN_VERBATIM = str.maketrans(
    {**{char: "\\" + char for char in "\\`*_{}[]()>#+-.!|"}, "&": "&amp;", "<": "&lt;"}
)


def markdown_table(mistakes: list[Mistake]) -> str:
    """Texts' mistakes as a Markdown table of Mistake.COLUMNS, each cell on one line and shown
    verbatim."""
    cells = [
        [one_line(str(cell)).translate(MARKDOWN_VERBATIM) for cell in mistake.table_row()]
        for mistake in mistakes
    ]
    rows = [Mistake.COLUMNS, ["---"] * len(Mistake.COLUMNS), *cells]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
{%- endif %}


class RunLogger:
    # Whether log_validation needs every sample's class probabilities (a collective: decided
    # by the logger types, so every rank agrees).
    needs_predictions = False

    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        """`resumed`: the checkpoint a run continues in its own folder; None for a new run."""

    @classmethod
    def check_can_start(cls, config: Config) -> None:
        """Raise a UserError before anything is built when this logger could not start."""

    def log_start(self, model: nn.Module, inputs: Callable[[], object]) -> None:
        """Once, before the first step: the model; inputs() draws a batch's (augmented)
        training inputs, whatever the task's batches hold (once, for whichever logger asks
        first)."""

    def log_step(self, values: dict, step: int) -> None:
        """Every --log-every optimizer updates: running train loss/accuracy and LR."""

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        """After each epoch: the metrics record written to metrics.jsonl."""

    def log_validation(self, results: dict, step: int) -> None:
        """After each validation: its scores (Validation.compute's), with every sample's
        prediction when a logger type needs_predictions."""

    def log_figure(self, figure: Figure, step: int) -> None:
        """After an epoch's validation, when a training hook draws one (training/hooks.py)."""
{%- if cookiecutter.insight == "yes" %}

    def log_embeddings(self, embeddings: Embeddings, step: int) -> None:
        """Once training has finished: best.pt's features of validation samples (insight/)."""

    def log_mistakes(self, mistakes: list[Mistake], grid: Image.Image | None, step: int) -> None:
        """Once training has finished: best.pt's most confident wrong predictions, most
        confident first, and `grid`, their captioned tiles in one image (mistakes.png), for
        pictures; None for texts, which loggers show as a table of Mistake.COLUMNS."""
{%- endif %}

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        """At the end of training: the best values and the best checkpoint."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this logger's record; kept in checkpoints."""
        return {}


def is_image_batch(inputs) -> bool:
    """Whether a batch's inputs are images (N, C, H, W), the only inputs a logger draws."""
    return isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.is_floating_point()


LOGGER_TYPES: list[type[RunLogger]] = []


def register_logger(logger_type: type[RunLogger]) -> type[RunLogger]:
    LOGGER_TYPES.append(logger_type)
    return logger_type


class ExperimentLoggers:
    """Every logger of the run as one (none in processes that do not write): a RunLogger event
    called on it is called on each logger in turn, and their state_dicts are merged."""

    def __init__(self, loggers: list[RunLogger]) -> None:
        self.loggers = loggers

    def __getattr__(self, event: str) -> Callable[..., None]:
        if event.startswith("_") or not callable(getattr(RunLogger, event, None)):
            raise AttributeError(f"{event!r} is not an event of RunLogger")

        def on_every_logger(*args, **kwargs) -> None:
            for logger in self.loggers:
                getattr(logger, event)(*args, **kwargs)

        return on_every_logger

    def state_dict(self) -> dict:
        return {key: value for logger in self.loggers for key, value in logger.state_dict().items()}
