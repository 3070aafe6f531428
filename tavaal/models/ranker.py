"""Loss-prediction module (Learning Loss, Yoo & Kweon 2019) used as TA-VAAL's Ranker (§3.1).

The official code hard-codes the tap sizes of a 32x32 ResNet; here the module is sized from the
taps a dummy forward through the task model actually produces, so any input size works.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tavaal.errors import ConfigError
from tavaal.models.base import TaskModel


def _pool(tap: Tensor) -> Tensor:
    """Global average pooling of a (N, C, ...) map to (N, C); vector taps (N, C) pass through."""
    return tap.mean(dim=tuple(range(2, tap.dim()))) if tap.dim() > 2 else tap


class LossPredictionModule(nn.Module):
    """Per tap GAP -> Linear(C, hidden) -> ReLU; concatenated -> Linear(., 1); output (N,)."""

    def __init__(self, tap_channels: list[int], hidden: int = 128) -> None:
        super().__init__()
        self.tap_channels = list(tap_channels)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Linear(c, hidden), nn.ReLU()) for c in tap_channels
        )
        self.head = nn.Linear(hidden * len(tap_channels), 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        _check_taps(features, self.tap_channels)
        pooled = [branch(_pool(tap)) for branch, tap in zip(self.branches, features, strict=True)]
        return self.head(torch.cat(pooled, dim=1)).squeeze(1)


class LinearRanker(nn.Module):
    """A single-layer perceptron on the (pooled, concatenated) taps (TA-VAAL §4.1, two moons)."""

    def __init__(self, tap_channels: list[int]) -> None:
        super().__init__()
        self.tap_channels = list(tap_channels)
        self.head = nn.Linear(sum(tap_channels), 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        _check_taps(features, self.tap_channels)
        return self.head(torch.cat([_pool(tap) for tap in features], dim=1)).squeeze(1)


def _check_taps(features: list[Tensor], tap_channels: list[int]) -> None:
    got = [int(tap.shape[1]) for tap in features]
    if got != tap_channels:
        raise ValueError(f"ranker expects taps with channels {tap_channels}, got {got}")


def tap_shapes(task_model: TaskModel, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per-sample shapes of the taps of `task_model` for one input of `input_shape`."""
    parameter = next(task_model.parameters())
    dummy = torch.zeros((1, *input_shape), dtype=parameter.dtype, device=parameter.device)
    was_training = task_model.training
    # Eval mode: batch-norm statistics stay untouched and a batch of one is allowed.
    task_model.eval()
    try:
        with torch.no_grad():
            features = task_model(dummy).features
    except RuntimeError as err:
        raise ConfigError(
            f"build_ranker: the task model does not accept input_shape {tuple(input_shape)}: {err}"
        ) from err
    finally:
        task_model.train(was_training)
    return [tuple(tap.shape[1:]) for tap in features]


def build_ranker(
    task_model: TaskModel, input_shape: tuple[int, ...], hidden: int = 128
) -> nn.Module:
    """Ranker for `task_model`: forward(features) -> (N,) predicted loss (rank score)."""
    if hidden < 1:
        raise ConfigError(f"ranker hidden width must be >= 1, got {hidden}")
    channels = [shape[0] for shape in tap_shapes(task_model, tuple(input_shape))]
    if not channels:
        raise ConfigError(f"{type(task_model).__name__} exposes no feature taps for a ranker")
    ranker = (
        LinearRanker(channels)
        if task_model.linear_ranker
        else LossPredictionModule(channels, hidden)
    )
    return ranker.to(next(task_model.parameters()).device)
