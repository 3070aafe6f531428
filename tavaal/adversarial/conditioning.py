"""How TA-VAAL's Ranker output r conditions the decoder and the discriminator (§3.1-3.3, §7.1).

Both ranker losses (the Learning-Loss margin loss and TA-VAAL's eq. 1) compare predicted losses
of pairs only, so they are blind to a constant shift of r, and eq. 1 also to much of its scale:
r's offset and spread are whatever the optimiser left. The paper feeds sigmoid(r) to the decoder
and D, and that is the default. On our CPU runs it saturated at times (in some queries 36-65% of
the candidates had sigmoid(r) < 0.01, in others sigmoid(r) had a std of 0.01-0.02), leaving D
almost no rank signal; "quantile" feeds each point's mid-rank among labeled + training pool,
scaled to (0, 1), invariant to any increasing transform of r. Our studies found no measurable
benefit from it (TA-VAAL's AULC - random: digits -1.8 quantile vs -2.5 sigmoid, Fashion-MNIST -0.5
vs -0.4, intervals overlapping), so the method named TA-VAAL runs the paper's form unless a config
asks otherwise.

Modes, as (decoder input, D input):
- "sigmoid" (default): sigmoid(r) for both, as the paper's text describes (§3.1, §7.1);
- "official": sigmoid(r) into the decoder but raw r into D, as the official code does;
- "quantile": (rank - 0.5) / n for both, ties at their average rank;
- "zscore_sigmoid": sigmoid((r - mean) / std) for both, statistics over labeled + pool.
"""

from __future__ import annotations

import numpy as np

RANK_STD_FLOOR = 1e-8
# A rank input outside this interval gives D (almost) no information beyond "extreme".
INFORMATIVE_INTERVAL = (0.01, 0.99)
RANK_NORMALIZATIONS = ("quantile", "zscore_sigmoid", "sigmoid", "official")


def sigmoid(v: np.ndarray) -> np.ndarray:
    """Logistic function in float64, evaluated as exp of a non-positive number (no overflow)."""
    v = np.asarray(v, dtype=np.float64)
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (float64), tied values sharing the average of their ranks."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    ranks = np.empty(len(values), dtype=np.float64)
    if len(values) == 0:
        return ranks
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def normalise_rank(r: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(decoder input, D input) from the raw Ranker outputs r of labeled + training pool."""
    r = np.asarray(r, dtype=np.float64)
    if mode == "quantile":
        q = (average_ranks(r) - 0.5) / max(len(r), 1)
        return q, q
    if mode == "zscore_sigmoid":
        std = max(float(r.std()), RANK_STD_FLOOR) if len(r) else 1.0
        s = sigmoid((r - (r.mean() if len(r) else 0.0)) / std)
        return s, s
    if mode == "sigmoid":
        s = sigmoid(r)
        return s, s
    if mode == "official":
        return sigmoid(r), r.copy()
    choices = ", ".join(RANK_NORMALIZATIONS)
    raise ValueError(f"rank_normalization must be one of {choices}; got {mode!r}")


def normalise_rank_against(
    r_new: np.ndarray, r_reference: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """(decoder input, D input) of new raw Ranker outputs `r_new`, normalised with the statistics
    of the reference set `r_reference` (labeled + training pool) a query trained on.

    A new value equal to a reference value gets exactly that value's normalised input, so
    `normalise_rank_against(r, r, mode) == normalise_rank(r, mode)`; for "quantile" a value
    between reference values gets (#reference below + #reference at or below) / 2 / n, i.e. the
    mid-rank it would take among the reference, minus 0.5, over n. Used to evaluate a trained
    adversary at points it was not trained on (e.g. a grid over the input plane).
    """
    r_new = np.asarray(r_new, dtype=np.float64)
    ref = np.asarray(r_reference, dtype=np.float64).reshape(-1)
    if mode == "quantile":
        ordered = np.sort(ref)
        below = np.searchsorted(ordered, r_new, side="left")
        at_or_below = np.searchsorted(ordered, r_new, side="right")
        q = (below + at_or_below) / 2.0 / max(len(ref), 1)
        return q, q
    if mode == "zscore_sigmoid":
        std = max(float(ref.std()), RANK_STD_FLOOR) if len(ref) else 1.0
        s = sigmoid((r_new - (ref.mean() if len(ref) else 0.0)) / std)
        return s, s
    return normalise_rank(r_new, mode)


def rank_statistics(raw_r: np.ndarray, disc_input: np.ndarray) -> dict[str, float]:
    """How much rank signal D gets: spread of the raw r, and of what D saw as r.

    rank_raw_std / rank_raw_iqr: spread of the raw Ranker outputs over labeled + training pool;
    rank_input_std: spread of D's rank input; rank_input_informative: share of D's rank inputs
    inside INFORMATIVE_INTERVAL (for "official", D's input is the raw r itself).
    """
    raw_r = np.asarray(raw_r, dtype=np.float64)
    disc_input = np.asarray(disc_input, dtype=np.float64)
    if len(raw_r) == 0:
        return {}
    low, high = INFORMATIVE_INTERVAL
    q25, q75 = np.percentile(raw_r, [25, 75])
    return {
        "rank_raw_std": float(raw_r.std()),
        "rank_raw_iqr": float(q75 - q25),
        "rank_input_std": float(disc_input.std()),
        "rank_input_informative": float(np.mean((disc_input > low) & (disc_input < high))),
    }
