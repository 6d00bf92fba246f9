"""A multilayer perceptron over the flattened image: a baseline with no spatial feature map
(so no Grad-CAM)."""

from torch import nn

from . import ModelInfo, register


def mlp(in_features: int, num_classes: int, hidden: int = 256) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.2),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


def build(spec, pretrained: bool) -> nn.Sequential:
    return mlp(spec.in_channels * spec.image_size**2, spec.num_classes)


register(ModelInfo("mlp", task="image_classification", build=build))
