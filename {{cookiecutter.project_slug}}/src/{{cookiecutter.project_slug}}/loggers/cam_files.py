"""cam/epoch-NNN.png: each Grad-CAM grid (--cam-every) in the run folder, whatever the logger."""

from pathlib import Path

from torchvision.transforms.v2.functional import to_pil_image

from ..config.schema import Config
from ..data.spec import DataSpec
from .base import CamImages, RunLogger, register_logger


@register_logger
class CamFiles(RunLogger):
    def __init__(self, run_dir: Path, config: Config, spec: DataSpec, resumed: dict | None) -> None:
        self.folder = run_dir / "cam"

    def log_cam(self, images: CamImages, step: int) -> None:
        self.folder.mkdir(exist_ok=True)
        path = self.folder / f"epoch-{images.epoch:03d}.png"
        to_pil_image(images.grid).save(path, compress_level=1)  # twice as fast as the default
