"""torchvision's ResNet-18, with a small-input stem; --pretrained loads ImageNet weights."""

from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from ..errors import UserError
from . import ModelInfo, register


def small_input_resnet18(spec, pretrained: bool) -> nn.Module:
    """torchvision's ResNet-18, with a 3x3 stem and no max-pool for inputs of 32 px or less.

    Larger inputs keep the stride-4 stem: at 64 px without it, ResNet-18 costs four times as
    much for little gain.
    """
    try:
        model = resnet18(weights=ResNet18_Weights.DEFAULT if pretrained else None)
    except OSError as error:
        raise UserError(
            f"cannot fetch the pretrained resnet18 weights ({error}): drop --pretrained offline"
        ) from None
    if spec.image_size <= 32:
        model.conv1 = nn.Conv2d(spec.in_channels, 64, 3, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif spec.in_channels != 3:
        model.conv1 = nn.Conv2d(spec.in_channels, 64, 7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, spec.num_classes)
    return model


register(
    ModelInfo(
        "resnet18",
        task="image_classification",
        build=small_input_resnet18,
        embedding_layer=lambda model: model.fc,
        cam_layer=lambda model: model.layer4,
        has_pretrained_weights=True,
    )
)
