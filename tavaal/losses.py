"""Losses of the loss-prediction module / Ranker on pairs of samples of one batch.

Pairing as in Learning Loss (Yoo & Kweon 2019): sample i is compared with sample B-1-i, for
i < B//2; with an odd batch the middle sample is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_indices(batch: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Indices (i, j) of the pairs (i, B-1-i), i < B//2."""
    if batch < 2:
        raise ValueError(f"pairing needs a batch of at least 2, got {batch}")
    first = torch.arange(batch // 2, device=device)
    return first, batch - 1 - first


def _pair_differences(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(l̂_i - l̂_j, [l_i > l_j]) over the pairs; the target is detached."""
    pred = pred.reshape(-1)
    target = target.detach().reshape(-1)
    if pred.numel() != target.numel():
        raise ValueError(
            "pred and target must have one value per sample, "
            f"got {pred.numel()} and {target.numel()}"
        )
    i, j = pair_indices(pred.numel(), pred.device)
    return pred[i] - pred[j], (target[i] > target[j]).to(pred.dtype)


def ranking_loss(pred: Tensor, target: Tensor) -> Tensor:
    """TA-VAAL eq. 1: -(2/B) sum_pairs [I log s(d) + (1-I) log(1 - s(d))], d = l̂_i - l̂_j.

    (2/B) times a sum over B/2 pairs is the mean over pairs, i.e. BCE-with-logits of d against I,
    which is evaluated stably (no log of a saturated sigmoid).
    """
    diff, greater = _pair_differences(pred, target)
    return F.binary_cross_entropy_with_logits(diff, greater)


def margin_loss(pred: Tensor, target: Tensor, margin: float = 1.0) -> Tensor:
    """Learning Loss: mean over pairs of max(0, -sign(l_i - l_j) (l̂_i - l̂_j) + margin).

    sign is +1 where l_i > l_j and -1 otherwise (ties included), as in the official code.
    """
    diff, greater = _pair_differences(pred, target)
    sign = 2.0 * greater - 1.0
    # relu, not clamp(min=0): the same values, and at a pair exactly on the margin a zero
    # gradient in every torch release (clamp's backward passes it there in torch 2.9).
    return F.relu(margin - sign * diff).mean()
