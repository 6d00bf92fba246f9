"""Model architectures and weight initialisation schemes."""

import torch
from torch import nn
from torchinfo import summary
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from ..config.schema import ModelConfig
from ..data.loaders import DataSpec
from ..errors import UserError


class SimpleCNN(nn.Module):
    """Three conv blocks and a linear head, for any input size from 8x8 up.

    Inputs above 32 px first pass stride-2 blocks that halve them down to 32 px or less, so the
    cost per image stays near that of a 32 px image whatever the photo size.
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, width: int = 32
    ) -> None:
        super().__init__()
        stem, channels = [], in_channels
        for _ in range(downsampling_steps(image_size)):
            stem.append(conv_block(channels, width, stride=2))
            channels = width
        self.features = nn.Sequential(
            *stem,
            conv_block(channels, width),
            conv_block(width, 2 * width),
            nn.MaxPool2d(2),
            conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def downsampling_steps(image_size: int, working_size: int = 32) -> int:
    steps = 0
    while image_size > working_size:
        image_size = (image_size + 1) // 2
        steps += 1
    return steps


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


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


def small_input_resnet18(spec: DataSpec, pretrained: bool) -> nn.Module:
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


def build_model(name: str, spec: DataSpec, pretrained: bool = False) -> nn.Module:
    if pretrained and name != "resnet18":
        raise UserError(f"--pretrained is only available for resnet18, not {name}")
    if name == "simple_cnn":
        return SimpleCNN(spec.in_channels, spec.num_classes, spec.image_size)
    if name == "mlp":
        return mlp(spec.in_channels * spec.image_size**2, spec.num_classes)
    return small_input_resnet18(spec, pretrained)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer: its input is the model's penultimate features (embeddings)."""
    if isinstance(model, SimpleCNN):
        return model.head[-1]
    if isinstance(model, ResNet):
        return model.fc
    # The mlp, and a model added later whose last linear layer is its classifier.
    return [module for module in model.modules() if isinstance(module, nn.Linear)][-1]


def last_conv_block(name: str, model: nn.Module) -> nn.Module:
    """The last block whose output is still a spatial feature map (before global pooling):
    the layer Grad-CAM explains (cam.py). The mlp has none: config refuses --cam-every for it."""
    if name == "simple_cnn":
        return model.features[-2]  # features end with this block, then the global pooling
    if name == "resnet18":
        return model.layer4
    raise ValueError(f"{name} has no convolutional block")


def memory_format(config: ModelConfig) -> torch.memory_format:
    """How the model's weights and inputs are laid out in memory (--channels-last)."""
    return torch.channels_last if config.channels_last else torch.contiguous_format


def initialise_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise conv and linear weights; norms get weight 1 / bias 0, biases 0.

    "default" keeps PyTorch's own per-layer initialisation.
    """
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init_weight(module.weight, scheme, is_conv=isinstance(module, nn.Conv2d))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def init_weight(weight, scheme: str, is_conv: bool) -> None:
    # Convs use fan_out (as torchvision's ResNets do): it keeps the backward signal stable.
    fan_mode = "fan_out" if is_conv else "fan_in"
    if scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, mode=fan_mode, nonlinearity="relu")
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, mode=fan_mode, nonlinearity="relu")
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight)
    elif scheme == "normal":
        nn.init.normal_(weight, std=0.01)


def model_summary(model: nn.Module, spec: DataSpec, device: torch.device) -> str:
    """torchinfo's table of layers, output sizes and parameter counts."""
    input_size = (1, spec.in_channels, spec.image_size, spec.image_size)
    table = summary(
        model,
        input_size=input_size,
        device=device,
        mode="eval",
        verbose=0,
        col_names=("output_size", "num_params"),
    )
    return str(table)
