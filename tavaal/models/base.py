"""Common pieces of the task learners: output record, base class, name registry, init helpers."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from tavaal.errors import ConfigError
from tavaal.registry import Registry


@dataclass
class TaskOutput:
    """What every task learner returns."""

    logits: Tensor  # (N, num_classes)
    embedding: Tensor  # (N, E): penultimate features, before dropout and classifier
    features: list[Tensor]  # mid-layer taps read by the Ranker / loss-prediction module


class TaskModel(nn.Module, ABC):
    """A classifier: a body (`forward_features`) and a head ``hidden -> Dropout(p) -> Linear``.

    `hidden` is empty for most task learners (the head is dropout + one linear layer on the
    body's output) and holds ``Linear-ReLU-Dropout`` blocks for the VGG16 classifier; its
    dropouts and the final one are the layers the MC-dropout methods sample. The embedding
    (core-set's features) is the input of the final dropout.
    """

    # True where TA-VAAL §4.1 attaches a single-layer perceptron Ranker (the two-moons MLP)
    # instead of the Learning-Loss module (GAP -> FC -> ReLU per tap).
    linear_ranker: ClassVar[bool] = False

    def __init__(
        self,
        features_dim: int,
        num_classes: int,
        dropout: float,
        hidden_widths: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = features_dim
        for index, hidden in enumerate(hidden_widths):
            if index > 0:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.hidden = nn.Sequential(*layers)
        self.embedding_dim = width
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    @abstractmethod
    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Return (body output (N, F), list of taps)."""

    def embed(self, features: Tensor) -> Tensor:
        """The head's hidden layers: body output -> embedding (N, E)."""
        return self.hidden(features)

    def forward(self, x: Tensor) -> TaskOutput:
        features, taps = self.forward_features(x)
        embedding = self.embed(features)
        logits = self.classifier(self.dropout(embedding))
        return TaskOutput(logits=logits, embedding=embedding, features=taps)


Builder = Callable[[tuple[int, ...], int, float], TaskModel]
TASK_MODELS: Registry[Builder] = Registry("task model", ConfigError)


def register_task_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make a builder ``(input_shape, num_classes, dropout) -> TaskModel`` known."""
    return TASK_MODELS.register(name)


def list_task_models() -> list[str]:
    return TASK_MODELS.names()


def build_task_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0
) -> TaskModel:
    """Build the task learner `name` for inputs of shape (C, H, W) or (D,)."""
    builder = TASK_MODELS.get(name)
    return builder(tuple(int(s) for s in input_shape), int(num_classes), float(dropout))


def image_shape(
    name: str, input_shape: tuple[int, ...], min_side: int = 1, meant_for: int | None = None
) -> tuple[int, int, int]:
    """Check that `input_shape` is (C, H, W) with positive sizes and H, W >= `min_side`
    (`meant_for`: the side the model is designed for, named in the error)."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError(
            f"task model {name!r} needs an image input_shape (C, H, W), got {tuple(input_shape)}"
        )
    c, h, w = input_shape
    if min(h, w) < min_side:
        design = f" (it is meant for {meant_for}x{meant_for})" if meant_for else ""
        raise ConfigError(
            f"task model {name!r} needs images of at least {min_side}x{min_side}{design}, "
            f"got input_shape {tuple(input_shape)}"
        )
    return c, h, w


def flat_size(input_shape: tuple[int, ...]) -> int:
    if not input_shape or min(input_shape) < 1:
        raise ConfigError(f"input_shape must be non-empty and positive, got {tuple(input_shape)}")
    return math.prod(input_shape)


def kaiming_init(module: nn.Module, linear: bool = True, transposed: bool = True) -> None:
    """Kaiming-normal convs (transposed ones too if `transposed`, linears if `linear`), zero
    bias, BN at identity (VAAL's code)."""
    kinds: tuple[type[nn.Module], ...] = (nn.Conv2d,)
    if transposed:
        kinds += (nn.ConvTranspose2d,)
    if linear:
        kinds += (nn.Linear,)
    for m in module.modules():
        if isinstance(m, kinds):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
