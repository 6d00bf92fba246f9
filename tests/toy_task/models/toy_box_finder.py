"""A small CNN that finds one box per picture: its corners as fractions of the picture's
sides, and the box's class. Pictures differ in size, so each goes through on its own."""

import torch
from torch import nn

from . import ModelInfo, register


class BoxFinder(nn.Module):
    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(6),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 36, 4 + num_classes)

    def forward(self, images: list[torch.Tensor]) -> dict:
        found = torch.cat([self.head(self.features(image.unsqueeze(0))) for image in images])
        return {"boxes": found[:, :4].sigmoid(), "logits": found[:, 4:]}


register(
    ModelInfo(
        "toy_box_finder",
        task="toy_boxes",
        build=lambda spec, pretrained: BoxFinder(len(spec.class_names)),
    )
)
