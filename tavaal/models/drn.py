"""Dilated Residual Networks for semantic segmentation (Yu, Koltun and Funkhouser, CVPR 2017).

Both papers use DRN as the segmentation task learner (VAAL §4.2, TA-VAAL §4.4) without naming
the variant; `drn_d_22` is the smallest of the DRN-D family and `drn_d_38` the next. Written
here from the paper's description:

- Dilation instead of striding (§2): of ResNet's five groups, the last two keep the resolution
  of the third, so the output stride is 8, and their convolutions are dilated by 2 and then 4.
  §2 keeps the previous dilation (1, then 2) in the first convolution of each formerly strided
  group; the released DRN-D models do not (fyu/drn, drn.py at commit d75db2e: levels 5 and 6
  are built with `new_level=False`, so every convolution of level 5 is dilated by 2 and every
  one of level 6 by 4). We follow the released network, so that its converted ImageNet weights
  (`train.init_weights`, `tavaal.models.weights`) run at the dilations they were trained with.
- Degridding (§4, DRN-B and DRN-C): no max-pooling after the stem (it is replaced by convolutions
  at full and half resolution, levels 1-2), and two levels of plain convolutions with decreasing
  dilation (2, then 1) and without residual connections at the end (levels 7-8), which remove
  the gridding artifacts of the dilated levels.
- DRN-D is a simplification of DRN-C that the same authors released with the paper's models
  (it is not described in the paper itself; its published size, 16.4M parameters for DRN-D-22
  with an ImageNet classifier, is checked in the tests): the stem is a 7x7 convolution at full
  resolution and levels 1, 2, 7 and 8 are one conv-BN-ReLU each instead of a pair. Levels 3-6
  are ResNet BasicBlocks (two 3x3 convolutions and a shortcut), 2-2-2-2 of them in DRN-D-22
  and 3-4-6-3 in DRN-D-38 (as in ResNet-18 and ResNet-34).

      level   0     1     2     3     4     5     6     7     8
      width   16    16    32    64    128   256   512   512   512
      stride  1     1     2     2     2     1     1     1     1      (cumulative: 8)
      dilate  1     1     1     1     1     2     4     2     1

The segmentation head is dropout, a 1x1 convolution to the classes and a bilinear upsampling of
the stride-8 logits to the input's size (as the DRN authors' segmentation models do: the
classifier runs at stride 8, then the scores are upsampled). Dropout sits on the stride-8
feature map so that MC-dropout samples it.

`drn_d_22_slim` is DRN-D-22 (the same blocks, levels, dilations, taps and head) at a quarter of
every width (`SLIM_WIDTHS`: 4 ... 128 channels, 1/16 of the multiply-adds, 1.0M parameters
instead of 15.9M): a DRN that trains at tens of images a second on one CPU core, for the CPU
examples and the workflow's end-to-end tests on `seg_shapes`. It is no model of the papers.

Segmentation networks have their own small registry (`build_segmentation_model`), apart from the
classification one in `tavaal.models.base`: their output is a `SegmentationOutput` with per-pixel
logits, not a `TaskOutput`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from tavaal.errors import ConfigError
from tavaal.models.base import image_shape, kaiming_init
from tavaal.models.resnet import BasicBlock
from tavaal.registry import Registry

# Channels of levels 0-8 (table above).
DRN_WIDTHS = (16, 16, 32, 64, 128, 256, 512, 512, 512)
# A quarter of every width: `drn_d_22_slim`, the CPU-sized DRN-D-22 (module docstring).
SLIM_WIDTHS = tuple(w // 4 for w in DRN_WIDTHS)
# Residual blocks in levels 3-6 per variant (the block counts of ResNet-18 and ResNet-34).
DRN_BLOCKS = {"d_22": (2, 2, 2, 2), "d_38": (3, 4, 6, 3)}
# Total stride of the feature map the classifier reads.
OUTPUT_STRIDE = 8
# Smallest input side accepted by the registry builders: one stride-8 cell.
MIN_SIDE = OUTPUT_STRIDE


@dataclass
class SegmentationOutput:
    """What a segmentation task learner returns (the per-pixel counterpart of `TaskOutput`)."""

    logits: Tensor  # (N, K, H, W): at the input's resolution
    embedding: Tensor  # (N, E): global average of the last feature map, before dropout
    features: list[Tensor]  # (N, C, h, w) taps read by the Ranker / loss-prediction module


def conv_bn_relu(
    in_channels: int, channels: int, kernel: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """A conv (padded to keep the size at stride 1) + BN + ReLU: DRN-D's levels 0-2 and 7-8."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel, stride, padding, dilation, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def residual_level(
    in_channels: int, channels: int, blocks: int, stride: int, dilation: int
) -> nn.Sequential:
    """`blocks` BasicBlocks, every convolution dilated by `dilation`, the first one included
    (the released DRN-D's `new_level=False`; module docstring)."""
    layers = [BasicBlock(in_channels, channels, stride, (dilation, dilation))]
    layers += [BasicBlock(channels, channels, 1, (dilation, dilation)) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class DRN(nn.Module):
    """DRN-D body (levels 0-8) and segmentation head (dropout, 1x1 conv, bilinear upsampling).

    Taps, one per group of levels that share a role (the ranker pools each one):
    levels 0-3 (stride 4, 64 channels), level 4 (stride 8, 128), the dilated levels 5-6 (512)
    and the degridding levels 7-8 (512: the map the classifier reads). With `blocks` of ResNet-18
    this mirrors the four stage taps of `ResNet`, whose last tap is also the classifier's input.
    """

    # The ranker is the Learning-Loss module on the four taps (`tavaal.models.ranker`).
    linear_ranker: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: tuple[int, int, int, int] = DRN_BLOCKS["d_22"],
        dropout: float = 0.0,
        widths: tuple[int, ...] = DRN_WIDTHS,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if len(widths) != 9 or len(blocks) != 4 or min(*widths, *blocks) < 1:
            raise ConfigError(
                f"DRN needs 9 positive widths and 4 block counts, got {widths}, {blocks}"
            )
        w = widths
        # Levels 0-2: 7x7 stem at full resolution, then one conv each, the second strided.
        stem = nn.Sequential(
            conv_bn_relu(in_channels, w[0], kernel=7),
            conv_bn_relu(w[0], w[1]),
            conv_bn_relu(w[1], w[2], stride=2),
        )
        self.groups = nn.ModuleList(
            [
                nn.Sequential(stem, residual_level(w[2], w[3], blocks[0], stride=2, dilation=1)),
                residual_level(w[3], w[4], blocks[1], stride=2, dilation=1),
                nn.Sequential(
                    residual_level(w[4], w[5], blocks[2], stride=1, dilation=2),
                    residual_level(w[5], w[6], blocks[3], stride=1, dilation=4),
                ),
                # Degridding (§4): decreasing dilation, no residual connections.
                nn.Sequential(conv_bn_relu(w[6], w[7], dilation=2), conv_bn_relu(w[7], w[8])),
            ]
        )
        self.num_classes = num_classes
        self.embedding_dim = w[8]
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(w[8], num_classes, 1)
        kaiming_init(self)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Return (the stride-8 feature map (N, E, ceil(H/8), ceil(W/8)), the four taps)."""
        taps = []
        out = x
        for group in self.groups:
            out = group(out)
            taps.append(out)
        return out, taps

    def logits_from_features(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """1x1 classifier on an (already dropped-out or not) feature map, upsampled to `size`."""
        logits = self.classifier(features)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> SegmentationOutput:
        features, taps = self.forward_features(x)
        logits = self.logits_from_features(self.dropout(features), tuple(x.shape[-2:]))
        return SegmentationOutput(logits=logits, embedding=features.mean(dim=(2, 3)), features=taps)


def build_drn(
    variant: str,
    num_classes: int,
    dropout: float = 0.0,
    in_channels: int = 3,
    widths: tuple[int, ...] = DRN_WIDTHS,
) -> DRN:
    """DRN-`variant` ("d_22" or "d_38") with channels `widths`, Kaiming-normal initialisation
    (given weights: `tavaal.models.weights`)."""
    try:
        blocks = DRN_BLOCKS[variant]
    except KeyError:
        raise ConfigError(
            f"unknown DRN variant {variant!r}; known: {', '.join(sorted(DRN_BLOCKS))}"
        ) from None
    return DRN(in_channels, num_classes, blocks=blocks, dropout=dropout, widths=widths)


SegmentationBuilder = Callable[[tuple[int, ...], int, float], nn.Module]
SEGMENTATION_MODELS: Registry[SegmentationBuilder] = Registry("segmentation model", ConfigError)


def register_segmentation_model(
    name: str,
) -> Callable[[SegmentationBuilder], SegmentationBuilder]:
    """Decorator: make a builder ``(input_shape, num_classes, dropout) -> model`` known."""
    return SEGMENTATION_MODELS.register(name)


def list_segmentation_models() -> list[str]:
    return SEGMENTATION_MODELS.names()


def build_segmentation_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
) -> nn.Module:
    """Build the segmentation network `name` for (C, H, W) inputs; H and W may differ from one
    batch to the next (the network is fully convolutional), `input_shape` fixes the channels and
    checks the size."""
    builder = SEGMENTATION_MODELS.get(name)
    return builder(tuple(int(s) for s in input_shape), int(num_classes), float(dropout))


def _drn_builder(
    variant: str, widths: tuple[int, ...] = DRN_WIDTHS, suffix: str = ""
) -> SegmentationBuilder:
    name = f"drn_{variant}{suffix}"

    def build(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> DRN:
        channels, _, _ = image_shape(name, input_shape, min_side=MIN_SIDE)
        return build_drn(variant, num_classes, dropout, in_channels=channels, widths=widths)

    build.__name__ = name
    return register_segmentation_model(name)(build)


drn_d_22 = _drn_builder("d_22")
drn_d_38 = _drn_builder("d_38")
drn_d_22_slim = _drn_builder("d_22", SLIM_WIDTHS, suffix="_slim")


def feature_size(side: int) -> int:
    """Side of the stride-8 feature map for an input side: three stride-2 3x3 convs, padded."""
    for _ in range(int(math.log2(OUTPUT_STRIDE))):
        side = (side - 1) // 2 + 1
    return side
