"""VGG16 with batch norm, VAAL's task learner (VAAL §4.1), as VAAL's official code builds it.

Two registered names share this one network (Simonyan & Zisserman's configuration D, with batch
norm after each conv, Ioffe & Szegedy): `vgg16_bn` for any image size (VAAL's CIFAR runs at 32x32)
and `vgg16_bn_224`, the same layers for VAAL's Caltech-256 and ImageNet runs at 224x224. At 224x224
both are the same network with the same parameters; `vgg16_bn_224` differs in its Ranker taps
(four, see `VGG16_224_TAPS`, instead of five) and in refusing inputs under 32x32, so all five
pools always apply, as in the paper (7x7x512 after the last pool at 224x224).

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
# `vgg16_bn_224`'s taps: the outputs of conv blocks 2-5 (after their pools): 128x56x56,
# 256x28x28, 512x14x14 and 512x7x7 at 224x224, the four resolutions of ResNet-18's stage outputs,
# where Learning Loss attaches its module. Block 1 (64x112x112) is left out: the widest and
# shallowest map, three quarters of the taps' activations and the least task-specific.
VGG16_224_TAPS = (1, 2, 3, 4)
# Smallest input side of `vgg16_bn_224` (five 2x2 pools: 32 -> 1), and the side it is meant for.
VGG16_224_MIN_SIDE = 32
VGG16_224_SIDE = 224


class VGG(TaskModel):
    """Taps: the outputs of the conv blocks listed in `taps` (0-based; after their pooling, if
    any); all five by default."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        blocks: tuple[tuple[int, ...], ...] = VGG16_BLOCKS,
        dropout: float = 0.0,
        head_widths: tuple[int, ...] = HEAD_WIDTHS,
        taps: tuple[int, ...] | None = None,
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
        self.taps = tuple(range(len(blocks))) if taps is None else tuple(taps)
        if not self.taps or any(not 0 <= t < len(blocks) for t in self.taps):
            raise ValueError(f"VGG taps must be block indices in [0, {len(blocks)}), got {taps}")
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
        for index, block in enumerate(self.blocks):
            out = block(out)
            if index in self.taps:
                taps.append(out)
        return self.pool(out).flatten(1), taps


@register_task_model("vgg16_bn")
def vgg16_bn(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> VGG:
    return VGG(image_shape("vgg16_bn", input_shape), num_classes, dropout=dropout)


@register_task_model("vgg16_bn_224")
def vgg16_bn_224(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> VGG:
    shape = image_shape(
        "vgg16_bn_224", input_shape, min_side=VGG16_224_MIN_SIDE, meant_for=VGG16_224_SIDE
    )
    return VGG(shape, num_classes, dropout=dropout, taps=VGG16_224_TAPS)
