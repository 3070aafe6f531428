"""Where the picks of two-moons queries lie, and what drove them (issue 9): distances to the
Bayes and the task learner's decision boundaries and to the noiseless moons, local density,
spread, the minority share, and the Ranker / discriminator statistics of each query, next to
the same numbers for the candidates they were picked from. Pure numbers from arrays and score
tables; `tavaal.adversary_replay.query_picks_from_files` gathers a run's queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tavaal.data.moons_geometry import bayes_boundary, moon_arcs
from tavaal.report.style import method_order

if TYPE_CHECKING:
    from tavaal.adversary_replay import QueryPicks

# Neighbours of the local density estimate (mean distance to the k nearest pool points).
DENSITY_NEIGHBOURS = 10


def _distance_to(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest of `curve`'s points (NaN if it has none)."""
    points = np.asarray(points, dtype=np.float64)
    if len(curve) == 0:
        return np.full(len(points), np.nan)
    return np.sqrt(((points[:, None, :] - curve[None, :, :]) ** 2).sum(-1)).min(axis=1)


def local_spacing(points: np.ndarray, pool: np.ndarray, k: int = DENSITY_NEIGHBOURS):
    """Mean distance of each point to its k nearest other pool points (small = dense)."""
    points = np.asarray(points, dtype=np.float64)
    pool = np.asarray(pool, dtype=np.float64)
    distances = np.sqrt(((points[:, None, :] - pool[None, :, :]) ** 2).sum(-1))
    distances = np.sort(distances, axis=1)
    # A point of the pool is its own nearest neighbour at distance 0: skip it.
    start = np.where(distances[:, 0] == 0.0, 1, 0)
    rows = np.arange(len(points))[:, None]
    columns = start[:, None] + np.arange(k)[None, :]
    return distances[rows, np.minimum(columns, distances.shape[1] - 1)].mean(axis=1)


def mean_pairwise_distance(points: np.ndarray) -> float:
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        return float("nan")
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(points), 1)].mean())


def point_geometry(
    x_train: np.ndarray,
    points: np.ndarray,
    model_boundary: np.ndarray | None = None,
    true_boundary: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per point (dataset indices `points`): distance to the Bayes decision boundary
    (`true_boundary` points, computed if None) and, if given, to the task learner's
    (`model_boundary`, e.g. `level_set_points` of its P(class 1); NaN where it has none), to
    the noiseless upper (majority) and lower (minority) moon, and the local spacing (mean
    distance to the nearest pool points; small: dense region)."""
    x = np.asarray(x_train, dtype=np.float64)
    where = x[np.asarray(points, dtype=np.int64)]
    upper, lower = moon_arcs()
    if true_boundary is None:
        true_boundary = bayes_boundary(x)
    frame = pd.DataFrame(
        {
            "index": np.asarray(points, dtype=np.int64),
            "dist_true_boundary": _distance_to(where, true_boundary),
            "dist_majority_moon": _distance_to(where, upper),
            "dist_minority_moon": _distance_to(where, lower),
            "local_spacing": local_spacing(where, x),
        }
    )
    if model_boundary is not None:
        frame.insert(2, "dist_model_boundary", _distance_to(where, model_boundary))
    return frame


def top_along_random_directions(
    points: np.ndarray, budget: int, directions: int, rng: np.random.Generator
) -> float:
    """Mean spread (mean pairwise distance) of the `budget` points highest along a random
    direction of the plane, over `directions` directions: what top-k picks on a smooth,
    almost linear score look like."""
    points = np.asarray(points, dtype=np.float64)
    spreads = []
    for _ in range(directions):
        direction = rng.normal(size=points.shape[1])
        spreads.append(mean_pairwise_distance(points[np.argsort(points @ direction)[-budget:]]))
    return float(np.mean(spreads))


def selection_geometry(
    x_train: np.ndarray,
    y_train: np.ndarray,
    queries: Sequence[QueryPicks],
    directions: int = 64,
) -> pd.DataFrame:
    """One row per query.

    Where the picks lie: the mean of each `point_geometry` column over the picks and over the
    candidates, the share of the minority class (class 1) among each, and their spread (mean
    pairwise distance). Two reference spreads for as many picks from the same candidates:
    `linear_top_spread`, the top along a random direction (`top_along_random_directions`,
    seeded by seed and stage), and `farthest_spread`, those farthest from the labeled set (what
    a discriminator that memorised the labeled points would pick).

    What drove them, where the score table has the columns: `loss_rank_rho`, Spearman's rho of
    the Ranker's predicted loss with the true loss over the candidates (Ranker quality);
    `rank_logit_rho`, Spearman's rho of D's rank input with D's logit (negative: D calls high
    predicted loss unlabeled, as TA-VAAL intends); `rank_auc`, the ROC AUC with which a low rank
    input marks the labeled points among labeled + candidates (0.5: r tells labeled from
    unlabeled no better than chance, so D has no reason to use it); `picks_top_rank_share`,
    the share of the picks among the candidates of highest rank input.

    The adversary's health, where the query recorded it (`adversary_diagnostics`):
    `recon_ratio` (VAE reconstruction error over the mean input's: near 1 = collapsed),
    `latent_mu_std`, `disc_auc` (D's AUC on labeled vs candidates, the points it trained on),
    `disc_output_std`.
    """
    from scipy import stats

    from tavaal.adversarial import roc_auc

    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train)
    true_boundary = bayes_boundary(x)
    rows = []
    for query in queries:
        candidates = np.asarray(query.candidates, dtype=np.int64)
        picked = np.isin(candidates, query.chosen)
        budget = int(picked.sum())
        frame = point_geometry(x, candidates, query.model_boundary, true_boundary)
        row = {"method": query.method, "seed": int(query.seed), "stage": int(query.stage)}
        for column in frame.columns.drop("index"):
            row[f"picks_{column}"] = float(frame.loc[picked, column].mean())
            row[f"candidates_{column}"] = float(frame[column].mean())
        row["picks_minority_share"] = float(np.mean(y[candidates[picked]] == 1))
        row["candidates_minority_share"] = float(np.mean(y[candidates] == 1))
        row["picks_spread"] = mean_pairwise_distance(x[candidates[picked]])
        row["candidates_spread"] = mean_pairwise_distance(x[candidates])
        rng = np.random.default_rng([int(query.seed), int(query.stage)])
        row["linear_top_spread"] = top_along_random_directions(
            x[candidates], budget, directions, rng
        )
        gap = _distance_to(x[candidates], x[np.asarray(query.labeled, dtype=np.int64)])
        row["farthest_spread"] = mean_pairwise_distance(x[candidates[np.argsort(gap)[-budget:]]])
        scores = query.scores
        if scores is not None:
            scores = scores.set_index("index").loc[candidates]
            if {"predicted_loss", "true_loss"} <= set(scores.columns):
                rho = stats.spearmanr(scores["predicted_loss"], scores["true_loss"]).statistic
                row["loss_rank_rho"] = float(rho)
            if {"rank_input", "disc_logit"} <= set(scores.columns):
                rank = scores["rank_input"].to_numpy(np.float64)
                rho = stats.spearmanr(rank, scores["disc_logit"]).statistic
                row["rank_logit_rho"] = float(rho)
                top = np.argsort(rank, kind="stable")[-budget:]
                row["picks_top_rank_share"] = float(np.isin(top, np.flatnonzero(picked)).mean())
                if query.labeled_rank_input is not None:
                    labeled_rank = np.asarray(query.labeled_rank_input, dtype=np.float64)
                    row["rank_auc"] = roc_auc(
                        np.r_[np.ones(len(labeled_rank)), np.zeros(len(rank))],
                        -np.r_[labeled_rank, rank],
                    )
        health = query.diagnostics or {}
        if health.get("mean_image_mse"):
            row["recon_ratio"] = float(health["vae_recon_mse"] / health["mean_image_mse"])
        for key in ("latent_mu_std", "disc_auc", "disc_output_std"):
            if key in health:
                row[key] = float(health[key])
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_geometry(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over the seeds and queries of each method of `selection_geometry`'s columns."""
    columns = [c for c in table.columns if c not in ("method", "seed", "stage")]
    order = method_order(table["method"])
    grouped = table.groupby("method")[columns].mean()
    grouped.insert(0, "queries", table.groupby("method").size())
    return grouped.loc[order].reset_index()
