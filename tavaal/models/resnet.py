"""ResNet-18 task learners: the CIFAR variant (TA-VAAL §4.2, Learning Loss) and the ImageNet one
(He et al. 2016, Table 1; TA-VAAL §4.3 uses it on Caltech-101 at 224x224).

Both are four stages of two BasicBlocks (64, 128, 256, 512 channels; stride 2 from the second
stage) and a global average pool; they differ in the stem only:

- `resnet18`: a 3x3 stride-1 conv and no max-pool, so 32x32 inputs keep a 4x4 map in the last
  stage; stride-2 3x3 convs never make a map vanish, so 28x28 and 8x8 inputs work too (8x8 ends
  at 1x1);
- `resnet18_imagenet`: a 7x7 stride-2 conv and a 3x3 stride-2 max-pool, so 224x224 inputs give
  56, 28, 14 and 7 pixel stage outputs. It is meant for 224x224 and accepts any input of at least
  32x32 (32x32 ends at 1x1).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from tavaal.models.base import TaskModel, image_shape, kaiming_init, register_task_model

# Smallest input side of `resnet18_imagenet`, and the side it is designed for.
IMAGENET_MIN_SIDE = 32
IMAGENET_SIDE = 224


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut; `dilations` (first, second convolution, each padded
    by its dilation so the size keeps) are DRN's (`tavaal.models.drn`), 1 in a plain ResNet."""

    def __init__(
        self, in_channels: int, channels: int, stride: int, dilations: tuple[int, int] = (1, 1)
    ) -> None:
        super().__init__()
        first, second = dilations
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, first, first, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, second, second, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            # Projection shortcut (1x1 conv + BN) where the shape changes.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def cifar_stem(in_channels: int, width: int) -> nn.Module:
    """3x3 stride-1 conv + BN + ReLU: the map keeps the input's size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


def imagenet_stem(in_channels: int, width: int) -> nn.Module:
    """7x7 stride-2 conv + BN + ReLU + 3x3 stride-2 max-pool (He et al. 2016): 224 -> 56."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )


Stem = Callable[[int, int], nn.Module]


class ResNet(TaskModel):
    """`stem(in_channels, widths[0])`, then the stages of BasicBlocks, then global average
    pooling. Taps: the outputs of the four stages (Learning Loss attaches its module there)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        dropout: float = 0.0,
        stem: Stem = cifar_stem,
    ) -> None:
        super().__init__(widths[-1], num_classes, dropout)
        self.stem = stem(in_channels, widths[0])
        stages = []
        current = widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(current, width, stride)]
            layers += [BasicBlock(width, width, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            current = width
        self.stages = nn.ModuleList(stages)
        kaiming_init(self, linear=False)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        out = self.stem(x)
        taps = []
        for stage in self.stages:
            out = stage(out)
            taps.append(out)
        return out.mean(dim=(2, 3)), taps


@register_task_model("resnet18")
def resnet18(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> ResNet:
    channels, _, _ = image_shape("resnet18", input_shape)
    return ResNet(channels, num_classes, dropout=dropout)


@register_task_model("resnet18_imagenet")
def resnet18_imagenet(
    input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0
) -> ResNet:
    channels, _, _ = image_shape(
        "resnet18_imagenet", input_shape, min_side=IMAGENET_MIN_SIDE, meant_for=IMAGENET_SIDE
    )
    return ResNet(channels, num_classes, dropout=dropout, stem=imagenet_stem)
