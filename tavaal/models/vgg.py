"""VGG16 with batch norm, VAAL's task learner (VAAL §4.1), adapted to small images.

Five conv blocks (2, 2, 3, 3, 3 convs of 3x3 + BN + ReLU; 64-128-256-512-512 channels), each
followed by a 2x2 max-pool. Pooling rule: a block pools only while its map is at least 2x2, so
the map never vanishes: 32x32 pools five times (to 1x1), 28x28 four times (28-14-7-3-1), 8x8
three times (8-4-2-1). The head is global average pooling -> 512-d embedding -> dropout ->
linear, instead of ImageNet's 4096-wide FC layers, which small inputs do not need.
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


class VGG(TaskModel):
    """Taps: the output of each of the five conv blocks (after its pooling, if any)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        blocks: tuple[tuple[int, ...], ...] = VGG16_BLOCKS,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(blocks[-1][-1], num_classes, dropout)
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
        # Xavier initialisation, as VAAL §4.1 states for its VGG16.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        taps = []
        out = x
        for block in self.blocks:
            out = block(out)
            taps.append(out)
        return out.mean(dim=(2, 3)), taps


@register_task_model("vgg16_bn")
def vgg16_bn(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> VGG:
    return VGG(image_shape("vgg16_bn", input_shape), num_classes, dropout=dropout)
