"""VGG16 with batch norm, VAAL's task learner (VAAL §4.1), as VAAL's official code builds it.

Five conv blocks (2, 2, 3, 3, 3 convs of 3x3 + BN + ReLU; 64-128-256-512-512 channels), each
followed by a 2x2 max-pool while the map is at least 2x2 (so it never vanishes: 32x32 pools five
times, to 1x1; 28x28 four times, 28-14-7-3-1; 224x224 five times, to 7x7). Then the standard
ImageNet head of VGG: an adaptive average pool to 7x7 (on small images it repeats the 1x1 map,
as the official code does), flatten (25,088), Linear-ReLU-Dropout, Linear(4096)-ReLU, Dropout,
Linear(classes); `train.dropout` is 0.5 in VGG's head and the VAAL presets.

Initialisation as the official code (torchvision's VGG): Kaiming-normal convs (fan out), batch
norm at identity, linear weights N(0, 0.01), zero biases. VAAL §4.1 says "Xavier
initialization"; where text and code differ, our VAAL presets follow the code.
"""

from __future__ import annotations

from torch import Tensor, nn

from tavaal.models.base import TaskModel, image_shape, register_task_model

VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
HEAD_POOL = 7
HEAD_WIDTHS = (4096, 4096)


class VGG(TaskModel):
    """Taps: the output of each of the five conv blocks (after its pooling, if any)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        blocks: tuple[tuple[int, ...], ...] = VGG16_BLOCKS,
        dropout: float = 0.0,
        head_widths: tuple[int, ...] = HEAD_WIDTHS,
    ) -> None:
        channels = blocks[-1][-1]
        super().__init__(channels * HEAD_POOL * HEAD_POOL, num_classes, dropout, head_widths)
        current, h, w = input_shape
        stages = []
        for widths in blocks:
            layers: list[nn.Module] = []
            for width in widths:
                layers += [
                    nn.Conv2d(current, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                current = width
            if h >= 2 and w >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            stages.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(HEAD_POOL)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        taps = []
        out = x
        for block in self.blocks:
            out = block(out)
            taps.append(out)
        return self.pool(out).flatten(1), taps


@register_task_model("vgg16_bn")
def vgg16_bn(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> VGG:
    return VGG(image_shape("vgg16_bn", input_shape), num_classes, dropout=dropout)
