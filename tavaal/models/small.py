"""Small task learners for CPU-scale experiments: a CNN for 8x8 digits, a two-block CNN for
28x28 images (Fashion-MNIST), an MLP for two moons."""

from __future__ import annotations

from torch import Tensor, nn

from tavaal.errors import ConfigError
from tavaal.models.base import (
    TaskModel,
    flat_size,
    image_shape,
    kaiming_init,
    register_task_model,
)


class DigitsCNN(TaskModel):
    """conv3x3(32) -> conv3x3(64) -> max-pool 2 -> FC(128), each conv with BN + ReLU.

    Taps: the first conv's activation (32, H, W) and the pooled second conv (64, H/2, W/2).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(hidden, num_classes, dropout)
        channels, h, w = input_shape
        if h < 2 or w < 2:
            raise ConfigError(f"digits_cnn needs images of at least 2x2, got {input_shape}")
        self.conv1 = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[1]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[1] * (h // 2) * (w // 2), hidden), nn.ReLU(inplace=True)
        )
        kaiming_init(self, linear=False)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        first = self.conv1(x)
        second = self.conv2(first)
        return self.fc(second), [first, second]


class SmallCNN(TaskModel):
    """Two blocks of conv3x3 + BN + ReLU + max-pool 2 (16 and 32 channels), then FC(128).

    Sized for CPU-scale experiments on 28x28 images: pooling after each conv keeps it about 12x
    cheaper per image than `digits_cnn` at that size (1.2 M multiply-adds on 28x28: 28-14-7).
    Taps: the output of each block.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, int] = (16, 32),
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(hidden, num_classes, dropout)
        channels, h, w = input_shape
        if h < 4 or w < 4:
            raise ConfigError(f"small_cnn needs images of at least 4x4, got {input_shape}")
        blocks = []
        for c_in, c_out in zip((channels, widths[0]), widths, strict=True):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
        self.block1, self.block2 = blocks
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[1] * (h // 4) * (w // 4), hidden), nn.ReLU(inplace=True)
        )
        kaiming_init(self, linear=False)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        first = self.block1(x)
        second = self.block2(first)
        return self.fc(second), [first, second]


class MLP(TaskModel):
    """The 3-layer MLP of TA-VAAL §4.1: Linear-ReLU-Linear-ReLU-(dropout)-Linear.

    Tap: the first hidden activation, the mid layer where §4.1 attaches its single-layer Ranker.
    Inputs of any shape are flattened, so (D,) vectors and small images both work.
    """

    linear_ranker = True

    def __init__(
        self, input_dim: int, num_classes: int, hidden: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__(hidden, num_classes, dropout)
        self.layer1 = nn.Sequential(nn.Flatten(), nn.Linear(input_dim, hidden), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        mid = self.layer1(x)
        return self.layer2(mid), [mid]


@register_task_model("digits_cnn")
def digits_cnn(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> DigitsCNN:
    return DigitsCNN(image_shape("digits_cnn", input_shape), num_classes, dropout=dropout)


@register_task_model("small_cnn")
def small_cnn(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> SmallCNN:
    return SmallCNN(image_shape("small_cnn", input_shape), num_classes, dropout=dropout)


@register_task_model("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> MLP:
    return MLP(flat_size(input_shape), num_classes, dropout=dropout)
