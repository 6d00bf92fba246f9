"""A small CNN that trains from scratch on a CPU: three conv blocks and a linear head."""

from torch import nn

from . import ModelInfo, register


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


def build(spec, pretrained: bool) -> SimpleCNN:
    return SimpleCNN(spec.in_channels, spec.num_classes, spec.image_size)


register(
    ModelInfo(
        "simple_cnn",
        task="image_classification",
        build=build,
        embedding_layer=lambda model: model.head[-1],
        cam_layer=lambda model: model.features[-2],  # the last block before global pooling
    )
)
