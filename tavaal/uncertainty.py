"""Scores of the uncertainty baselines, computed from probability arrays.

Probability arrays hold softmax outputs: ``(N, K)`` for one deterministic pass, ``(T, N, K)`` for
T stochastic passes (MC dropout, Gal et al. 2017) or the M members of an ensemble (Beluch et al.
2018). Entropies use the natural logarithm, with ``0 log 0 = 0``. The selections on distances
(core-set, BADGE, TypiClust, ProbCover) are in `tavaal.diversity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (max-subtracted, so large logits do not overflow)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy over the last axis: ``-sum_k p_k log p_k`` (nats)."""
    # Imported here: scipy takes ~0.3 s to import, and training jobs load this module too.
    from scipy.special import xlogy

    probs = np.asarray(probs, dtype=np.float64)
    # Rounding can make a mathematically non-negative entropy -1e-17; report it as 0.
    return np.maximum(-xlogy(probs, probs).sum(axis=-1), 0.0)


def margin(probs: np.ndarray) -> np.ndarray:
    """Gap between the two largest probabilities over the last axis (Scheffer et al. 2001):
    small where the model hesitates between two classes. 1 (a sure prediction) with one class."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[-1] < 2:
        return np.ones(probs.shape[:-1], dtype=np.float64)
    top_two = np.partition(probs, -2, axis=-1)[..., -2:]
    return top_two[..., 1] - top_two[..., 0]


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - max_k p_k`` over the last axis (Lewis & Gale 1994; Settles 2009 §3.1)."""
    probs = np.asarray(probs, dtype=np.float64)
    return 1.0 - probs.max(axis=-1)


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD mutual information ``H[mean_t p_t] - mean_t H[p_t]`` (Gal et al. 2017, eq. 4).

    `mc_probs` has shape (T, N, K). The value is >= 0 by concavity of the entropy; rounding noise
    below zero is clipped so that samples on which all passes agree score exactly 0 or ~1e-16.
    """
    mc_probs = _stack(mc_probs)
    mean_entropy = entropy(mc_probs.mean(axis=0))
    expected_entropy = entropy(mc_probs).mean(axis=0)
    return np.maximum(mean_entropy - expected_entropy, 0.0)


def variation_ratio(mc_probs: np.ndarray) -> np.ndarray:
    """``1 - f_mode / T``: the share of passes (or ensemble members) not voting for the mode.

    Each pass votes for its argmax class (the lowest class index on an exact tie within a pass).
    The value depends only on the size of the largest vote count, so it is the same whichever class
    is taken as the mode when two classes tie for it (Gal et al. 2017 §3; Beluch et al. 2018 §3).
    """
    mc_probs = _stack(mc_probs)
    passes, n, classes = mc_probs.shape
    votes = mc_probs.argmax(axis=2)  # (T, N)
    counts = np.zeros((n, classes), dtype=np.int64)
    for t in range(passes):
        counts[np.arange(n), votes[t]] += 1
    return 1.0 - counts.max(axis=1, initial=0) / passes


def with_tie_break(
    primary: np.ndarray, levels: int, secondary: np.ndarray, upper: float
) -> np.ndarray:
    """One score ordering by `primary`, then by `secondary`, for a `primary` on a 1/levels grid.

    The variation ratio takes only `levels` + 1 values (multiples of 1/T or 1/M), so thousands of
    candidates tie. Adding ``secondary / upper * 0.5 / levels`` (with 0 <= secondary <= upper)
    moves a score by at most half a grid step: candidates are ordered by `primary` first and by
    `secondary` within a level, and `top_k` still breaks any remaining tie by the smaller index.
    """
    primary = np.asarray(primary, dtype=np.float64)
    secondary = np.asarray(secondary, dtype=np.float64)
    scale = 0.5 / (max(int(levels), 1) * (upper if upper > 0 else 1.0))
    return primary + np.clip(secondary, 0.0, max(upper, 0.0)) * scale


@dataclass
class PassScores:
    """Per-sample scores of T stochastic passes (or M ensemble members), each (N,) float64."""

    mean_entropy: np.ndarray  # entropy of the mean prediction (DBAL; the tie-break of ratios)
    bald: np.ndarray | None  # mutual information (None when not asked for)
    variation_ratio: np.ndarray
    classes: int = 0  # K, the last axis of the probabilities


def pass_scores(mc_probs: np.ndarray, with_bald: bool = True) -> PassScores:
    """`entropy(mean)`, `bald` and `variation_ratio` of a (T, n, K) block of samples, computed so
    that every sample's values do not depend on which other samples share the block.

    numpy reduces over the first axis of a (T, n) or (T, n, K) array by adding the passes in
    order, except when n == 1, where the reduction runs over one contiguous axis and numpy sums
    pairwise. The means over T are therefore written out as that in-order sum (then / T): for
    whole pools of n >= 2 samples this reproduces `entropy(mc_probs.mean(axis=0))`,
    `bald(mc_probs)` and `variation_ratio(mc_probs)` bit for bit, block by block, down to blocks
    of one sample (a pool of one sample is scored with those functions themselves, see
    `PassScoreStream`).
    """
    mc_probs = _stack(mc_probs)
    mean_entropy = entropy(_mean_over_passes(mc_probs))
    values = None
    if with_bald:
        expected_entropy = _mean_over_passes(entropy(mc_probs))
        values = np.maximum(mean_entropy - expected_entropy, 0.0)
    return PassScores(mean_entropy, values, variation_ratio(mc_probs), mc_probs.shape[2])


class PassScoreStream:
    """Collects `pass_scores` block by block into (N,) arrays: the memory of one query is then
    O(N) scores plus one (T, block, K) block instead of the whole (T, N, K) array.

    ``stream.add(start, stop, block)`` scores rows start:stop; `result()` returns the scores of
    all N rows, equal bit for bit to `entropy(p.mean(axis=0))`, `bald(p)` and
    `variation_ratio(p)` of the whole (T, N, K) array p.
    """

    def __init__(self, n: int, with_bald: bool = True, classes: int = 0) -> None:
        self.n = n
        self.classes = classes  # until a block says otherwise
        self.with_bald = with_bald
        self.mean_entropy = np.zeros(n, dtype=np.float64)
        self.bald = np.zeros(n, dtype=np.float64) if with_bald else None
        self.variation_ratio = np.zeros(n, dtype=np.float64)

    def add(self, start: int, stop: int, block: np.ndarray, reduce=None) -> None:
        """Score the (T, r, K) `block` and store rows start:stop; `reduce` maps each (r,)
        score to the (stop - start,) scores of those rows (a segmentation image's pixels to
        their mean); without it, r = stop - start."""
        block = _stack(block)
        self.classes = block.shape[2]
        if self.n == 1 and block.shape[1] == 1:
            # The whole pool is this one sample: numpy's own (pairwise) reduction, as before.
            scores = PassScores(
                entropy(block.mean(axis=0)),
                bald(block) if self.with_bald else None,
                variation_ratio(block),
            )
        else:
            scores = pass_scores(block, self.with_bald)
        reduce = reduce or (lambda values: values)
        self.mean_entropy[start:stop] = reduce(scores.mean_entropy)
        if self.bald is not None:
            self.bald[start:stop] = reduce(scores.bald)
        self.variation_ratio[start:stop] = reduce(scores.variation_ratio)

    def result(self) -> PassScores:
        return PassScores(self.mean_entropy, self.bald, self.variation_ratio, self.classes)


def _mean_over_passes(values: np.ndarray) -> np.ndarray:
    """``values.mean(axis=0)`` as numpy computes it for a non-degenerate second axis: the
    passes added in order to a +0.0 start (so that -0.0 sums to +0.0, as numpy's), then divided
    by their number."""
    total = values[0] + 0.0
    for t in range(1, values.shape[0]):
        total += values[t]
    return total / values.shape[0]


def _stack(mc_probs: np.ndarray) -> np.ndarray:
    mc_probs = np.asarray(mc_probs, dtype=np.float64)
    if mc_probs.ndim != 3 or mc_probs.shape[0] < 1:
        raise ValueError(
            f"expected probabilities of shape (T, N, K) with T >= 1, got {mc_probs.shape}"
        )
    return mc_probs
