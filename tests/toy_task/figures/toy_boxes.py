"""A training hook of the toy detection task: after each validation, the boxes the model finds
on the first validation pictures (true in green, found in red), to the loggers as a Figure."""

import torch
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes, make_grid

from ..loggers.base import Figure
from ..training.hooks import TrainingHook, register_hook

SHOWN = 8
SIDE = 28  # the largest picture: smaller ones are padded to it


@register_hook
class FoundBoxes(TrainingHook):
    def after_validation(self, model, loggers) -> None:
        task = self.training.task
        if task.declaration.name != "toy_boxes":  # this project trains other tasks too
            return
        samples = [self.training.val_loader.dataset[index] for index in range(SHOWN)]
        pictures = [picture.to(self.runtime.device) for picture, _ in samples]
        with torch.no_grad():
            outputs = task.forward(model, pictures)
        found = (outputs["boxes"].float() * outputs["sides"]).cpu()
        panels = [
            drawn(picture, target["boxes"][0], box)
            for (picture, target), box in zip(samples, found, strict=True)
        ]
        labels = outputs["logits"].argmax(dim=1).tolist()
        captions = [f"found class {label}" for label in labels]
        epoch = self.training.progress.epoch
        figure = Figure("boxes", epoch, panels, captions, make_grid(panels, nrow=4, padding=2))
        loggers.log_figure(figure, self.training.progress.global_step)


def drawn(picture: torch.Tensor, true: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    pixels = (picture * 255).to(torch.uint8)
    boxes = draw_bounding_boxes(pixels, torch.stack([true, found]), colors=["green", "red"])
    height, width = boxes.shape[1:]
    return F.pad(boxes, [0, 0, SIDE - width, SIDE - height])
