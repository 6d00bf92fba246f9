"""--cam-every: Grad-CAM heat maps of a fixed set of validation images, in the run folder
(cam/epoch-NNN.png, whatever the logger) and for the loggers.

Grad-CAM (Selvaraju et al., 2017) weighs each feature map of the model's last convolutional
block by the mean gradient of the predicted class's logit over that map; the positive part of
the weighted sum, scaled up to the image, shows where the evidence for the prediction lies.
"""

import functools
import math

import torch
from PIL import ImageDraw
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F
from torchvision.utils import make_grid

from ..data.labels import training_labels
from ..data.spec import DataSpec
from ..loggers.base import ExperimentLoggers, Figure
from ..loggers.pictures import fitted, label_font, unnormalised
from ..models import model_info
from ..training.hooks import TrainingHook, register_hook

IMAGES_PER_CLASS = 2
MAX_IMAGES = 16
# Inputs are enlarged by a whole factor to at least this side, so that 8 px digits show; a
# larger grid would cost more to encode (twice, with TensorBoard) than drawing it.
MIN_SIDE = 64
CAPTION_HEIGHT = 26  # two lines of Pillow's default font
GAP = 2  # between an image and its overlay
GRID_COLUMNS = 4
GRID_PADDING = 4
HEAT_OPACITY = 0.5


@register_hook
class GradCamEveryFewEpochs(TrainingHook):
    """Every --cam-every epochs, after validation: GradCam's figure, to the run folder and the
    loggers."""

    @functools.cached_property
    def cam(self) -> "GradCam":
        training = self.training
        return GradCam(
            self.config.model.model,
            training.val_loader.dataset,
            training.spec,
            self.runtime.device,
            training.memory_format,
        )

    def after_validation(self, model: nn.Module, loggers: ExperimentLoggers) -> None:
        every, progress = self.config.extras["cam_every"], self.training.progress
        if not every or progress.epoch % every:
            return
        figure = self.cam(model, progress.epoch)
        folder = self.run_dir / "cam"
        folder.mkdir(exist_ok=True)
        path = folder / f"epoch-{figure.epoch:03d}.png"
        F.to_pil_image(figure.grid).save(path, compress_level=1)  # twice as fast as the default
        loggers.log_figure(figure, progress.global_step)


class GradCam:
    """Grad-CAM of the same validation images every time: chosen once, when built."""

    def __init__(
        self,
        model_name: str,
        dataset: Dataset,
        spec: DataSpec,
        device: torch.device,
        memory_format: torch.memory_format,
    ) -> None:
        chosen = choose_images(training_labels(dataset), spec.num_classes)
        samples = [dataset[index] for index in chosen]
        images = torch.stack([image for image, _ in samples])
        self.images = images.to(device, memory_format=memory_format)
        self.labels = [int(label) for _, label in samples]
        self.cam_layer = model_info(model_name).cam_layer
        self.spec = spec

    def __call__(self, model: nn.Module, epoch: int) -> Figure:
        heat_maps, predicted = grad_cam(model, self.cam_layer(model), self.images)
        names = self.spec.class_names
        true_names = [names[label] for label in self.labels]
        predicted_names = [names[label] for label in predicted.tolist()]
        panels = panel_images(
            unnormalised(self.images.cpu(), self.spec).expand(-1, 3, -1, -1), heat_maps.cpu()
        )
        height, width = panels.shape[-2:]
        corners = panel_corners(len(panels), width, height)
        grid = make_grid(panels, nrow=GRID_COLUMNS, padding=GRID_PADDING, pad_value=1.0)
        grid = with_labels(grid, corners, (width, height), true_names, predicted_names)
        return Figure(
            "cam",
            epoch,
            panels=[grid[:, top : top + height, left : left + width] for left, top in corners],
            captions=[
                f"true {true}, predicted {predicted}"
                for true, predicted in zip(true_names, predicted_names, strict=True)
            ],
            grid=grid,
        )


def choose_images(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Indices of up to IMAGES_PER_CLASS images of each class, MAX_IMAGES in all, by class.

    Each class's first images in dataset order, taken a round at a time (every class's first,
    then every class's second), so that where MAX_IMAGES cuts in, classes differ by one image
    at most. Nothing is drawn at random: the same images whatever the seed or RNG state.
    """
    by_class = [torch.nonzero(labels == label).flatten().tolist() for label in range(num_classes)]
    rounds = [
        indices[turn]
        for turn in range(IMAGES_PER_CLASS)
        for indices in by_class
        if turn < len(indices)
    ]
    return sorted(rounds[:MAX_IMAGES], key=lambda index: (int(labels[index]), index))


def grad_cam(
    model: nn.Module, block: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's heat map for its predicted class, (N, H, W) in [0, 1] at the images' size,
    and the predicted classes.

    The model runs in eval mode, eagerly even when compiled, in float32 with autocast off, and
    is left in the mode it was in. The gradient is taken with respect to the block's output
    alone (torch.autograd.grad): no parameter gets a .grad and no DistributedDataParallel hook
    runs, so no other rank waits for this one.
    """
    outputs = []
    hook = block.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    was_training = model.training
    model.eval()
    try:
        with (
            torch.enable_grad(),
            torch.autocast(images.device.type, enabled=False),
            torch.compiler.set_stance("force_eager"),
        ):
            logits = model(images.float())
            predicted = logits.argmax(dim=1)
            score = logits.gather(1, predicted[:, None]).sum()
            (gradients,) = torch.autograd.grad(score, outputs[0])
    finally:
        hook.remove()
        model.train(was_training)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    maps = torch.relu((weights * outputs[0].detach()).sum(dim=1, keepdim=True))
    maps = nn.functional.interpolate(maps, size=images.shape[-2:], mode="bilinear")[:, 0]
    peaks = maps.amax(dim=(1, 2), keepdim=True)
    return maps / peaks.clamp_min(torch.finfo(maps.dtype).tiny), predicted


def jet(heat: torch.Tensor) -> torch.Tensor:
    """(N, H, W) values in [0, 1] as (N, 3, H, W) colours from blue through green to red."""
    ramps = [1.5 - (4 * heat - centre).abs() for centre in (3, 2, 1)]  # red, green, blue
    return torch.stack(ramps, dim=1).clamp(0, 1)


def panel_images(pixels: torch.Tensor, heat_maps: torch.Tensor) -> torch.Tensor:
    """(N, 3, H + CAPTION_HEIGHT, 2W + GAP) in [0, 1]: each image, enlarged to at least MIN_SIDE,
    beside its heat map blended over it, with white space for the labels below."""
    scale = math.ceil(MIN_SIDE / max(pixels.shape[-2:]))
    size = [side * scale for side in pixels.shape[-2:]]
    enlarged = F.resize(pixels, size, interpolation=F.InterpolationMode.NEAREST)
    heat = nn.functional.interpolate(heat_maps[:, None], size=size, mode="bilinear")[:, 0]
    overlays = (1 - HEAT_OPACITY) * enlarged + HEAT_OPACITY * jet(heat)
    gap = torch.ones(*enlarged.shape[:-1], GAP)
    side_by_side = torch.cat([enlarged, gap, overlays], dim=-1)
    return nn.functional.pad(side_by_side, (0, 0, 0, CAPTION_HEIGHT), value=1.0)


def panel_corners(count: int, width: int, height: int) -> list[tuple[int, int]]:
    """(left, top) of each panel in make_grid's layout."""
    return [
        (
            GRID_PADDING + column * (width + GRID_PADDING),
            GRID_PADDING + row * (height + GRID_PADDING),
        )
        for row, column in (divmod(index, GRID_COLUMNS) for index in range(count))
    ]


def with_labels(
    grid: torch.Tensor,
    corners: list[tuple[int, int]],
    panel_size: tuple[int, int],
    true_names: list[str],
    predicted_names: list[str],
) -> torch.Tensor:
    """The grid as (3, H, W) uint8, each panel's labels written below its images (the
    prediction in green when right, red when wrong)."""
    canvas = F.to_pil_image(grid)
    draw = ImageDraw.Draw(canvas)
    font = label_font([*true_names, *predicted_names])
    width, height = panel_size
    for (left, top), true, predicted in zip(corners, true_names, predicted_names, strict=True):
        caption_top = top + height - CAPTION_HEIGHT
        colour = "green" if predicted == true else "red"
        for line, offset, fill in ((f"true {true}", 2, "black"), (f"pred {predicted}", 14, colour)):
            text = fitted(font.drawable(line), draw, font.font, width - 4)
            draw.text((left + 2, caption_top + offset), text, fill=fill, font=font.font)
    return F.pil_to_tensor(canvas)
