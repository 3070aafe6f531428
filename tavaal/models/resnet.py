"""CIFAR-style ResNet-18, the task learner of TA-VAAL §4.2 and Learning Loss.

3x3 stride-1 stem and no max-pool, so 32x32 inputs keep a 4x4 map in the last stage; stride-2
3x3 convs never make a map vanish, so 28x28 and 8x8 inputs work too (8x8 ends at 1x1).
"""

from __future__ import annotations

from torch import Tensor, nn

from tavaal.models.base import TaskModel, image_shape, kaiming_init, register_task_model


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
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


class ResNet(TaskModel):
    """Taps: the outputs of the four stages (Learning Loss attaches its module there)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(widths[-1], num_classes, dropout)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
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
