"""Weights & Biases: config, metrics by step, best values in the summary, best checkpoint, and
the pictures and tables of the run's other events.

A resumed run continues the same wandb run: its id is kept in the checkpoints. Without a
network, online mode fails in one line within SERVER_TIMEOUT_SECONDS instead of hanging.
"""

import netrc
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import wandb
{%- if cookiecutter.insight == "yes" %}
from PIL import Image
{%- endif %}
from torch import nn
{%- if cookiecutter.insight == "yes" %}
from torchvision.transforms.v2.functional import to_pil_image
{%- endif %}
from torchvision.utils import make_grid

from ..config.schema import Config
from ..data.spec import DataSpec
from ..datasets import dataset_info
from ..errors import UserError
from ..tasks import declaration
{%- if cookiecutter.insight == "yes" %}
from .base import Embeddings, Figure, Mistake, RunLogger, is_image_batch, register_logger
{%- else %}
from .base import Figure, RunLogger, is_image_batch, register_logger
{%- endif %}

OFFLINE_MODES = ("offline", "disabled", "dryrun")
SERVER_TIMEOUT_SECONDS = 10
OFFLINE_HINT = "or set WANDB_MODE=offline to log locally and `wandb sync` later"


def check_wandb_can_log() -> None:
    """Fail before anything is written when online wandb lacks an API key or its server."""
    if os.environ.get("WANDB_MODE", "online") in OFFLINE_MODES:
        return
    if not has_wandb_credentials():
        raise UserError(
            f"wandb has no API key: run `wandb login` or set WANDB_API_KEY, {OFFLINE_HINT}"
        )
    check_server_answers(wandb.setup().settings.base_url)


def check_server_answers(url: str) -> None:
    """Any HTTP answer will do; wandb itself would retry for minutes before giving up."""
    try:
        urllib.request.urlopen(url, timeout=SERVER_TIMEOUT_SECONDS).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise UserError(
            f"wandb server {url} did not answer within {SERVER_TIMEOUT_SECONDS} s ({reason}): "
            f"check the network or WANDB_BASE_URL, {OFFLINE_HINT}"
        ) from None


def has_wandb_credentials() -> bool:
    """An API key from the environment or from `wandb login` (stored in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def task_metrics(config: Config) -> Mapping[str, str]:
    """The validation metrics of the run's task, each "min" or "max" as it is better."""
    return declaration(dataset_info(config.data.dataset).task).metrics


def project_name(config: Config) -> str:
    """--wandb-project, else $WANDB_PROJECT, else this package's name (wandb's own default, made
    from the working folder's path, fails beyond 128 characters)."""
    return (
        config.extras["wandb_project"]
        or os.environ.get("WANDB_PROJECT")
        or __package__.partition(".")[0]
    )


@register_logger
class WandbLogger(RunLogger):
    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        saved = {} if resumed is None else resumed.get("loggers", {})
        try:
            self.run = wandb.init(
                project=project_name(config),
                entity=config.extras["wandb_entity"],
                name=config.run.name,
                id=saved.get("wandb_run_id"),
                resume="allow",
                dir=run_dir,
                config={**config.to_dict(), "classes": list(spec.class_names)},
                mode=os.environ.get("WANDB_MODE", "online"),
            )
        except wandb.errors.Error as error:
            reason = str(error).splitlines()[0]
            raise UserError(f"wandb could not start the run ({reason}): {OFFLINE_HINT}") from None
        for metric, better in task_metrics(config).items():
            self.run.define_metric(metric, summary=better)

    @classmethod
    def check_can_start(cls, config: Config) -> None:
        check_wandb_can_log()

    def log_start(self, model: nn.Module, inputs: Callable[[], object]) -> None:
        """An image batch's grid; nothing for other inputs."""
        batch = inputs()
        if not is_image_batch(batch):
            return
        grid = make_grid(batch[:64].float(), nrow=8, normalize=True, scale_each=True)
        self.run.log({"inputs/train_batch": wandb.Image(grid)}, step=0)

    def log_step(self, values: dict, step: int) -> None:
        self.run.log({f"step/{key}": value for key, value in values.items()}, step=step)

    def log_epoch(self, record: dict, step: int, model: nn.Module) -> None:
        self.run.log(record, step=step)

    def log_figure(self, figure: Figure, step: int) -> None:
        pictures = [
            wandb.Image(panel.permute(1, 2, 0).numpy(), caption=caption)
            for panel, caption in zip(figure.panels, figure.captions, strict=True)
        ]
        self.run.log({f"{figure.name}/val": pictures}, step=step)
{%- if cookiecutter.insight == "yes" %}

    def log_embeddings(self, embeddings: Embeddings, step: int) -> None:
        """A table whose features column wandb's 2D projection panel reduces and plots; pictures
        have an image column.

        The features go in as NumPy rows, which wandb serialises several times faster than lists.
        """
        columns, rows = list(embeddings.columns), embeddings.metadata()
        if embeddings.thumbnails is not None:
            columns.append("image")
            pictures = [wandb.Image(to_pil_image(thumbnail)) for thumbnail in embeddings.thumbnails]
            rows = [[*row, picture] for row, picture in zip(rows, pictures, strict=True)]
        features = embeddings.features.numpy()
        rows = [[*row, vector] for row, vector in zip(rows, features, strict=True)]
        table = wandb.Table(columns=[*columns, "features"], data=rows)
        self.run.log({"val/embeddings": table}, step=step)

    def log_mistakes(self, mistakes: list[Mistake], grid: Image.Image | None, step: int) -> None:
        """Captioned pictures, or the texts' table."""
        if grid is None:
            rows = [mistake.table_row() for mistake in mistakes]
            shown = wandb.Table(columns=list(Mistake.COLUMNS), data=rows)
        else:
            shown = [wandb.Image(mistake.image, caption=mistake.caption) for mistake in mistakes]
        self.run.log({"val/mistakes": shown}, step=step)
{%- endif %}

    def finish(self, summary: dict, best_checkpoint: Path) -> None:
        for key, value in summary.items():
            self.run.summary[f"best_{key}"] = value
        if best_checkpoint.exists():
            artifact = wandb.Artifact(f"{self.run.name}-best", type="model")
            artifact.add_file(str(best_checkpoint))
            self.run.log_artifact(artifact)
        self.run.finish()

    def state_dict(self) -> dict:
        return {"wandb_run_id": self.run.id}
