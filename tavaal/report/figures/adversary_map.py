"""What the adversary of a two-moons query learned, and where the picks lie (issue 9).

`replay_query_adversary` retrains the VAE + discriminator of a finished VAAL / TA-VAAL query
from its files. Training is seeded from (seed, stage) only, so on the same device the replay is
the query's own adversary: the replayed logits of the candidates are compared with the
`disc_logit` column of the query's scores.parquet and the difference is reported.

`adversary_map` evaluates that adversary over a grid of the input plane: D's logit of
(mu(x)[, r(x)]) (the candidates with the lowest logit are picked), D's rank input r(x) for
TA-VAAL, and the latent means of labeled points and candidates projected on their first two
principal components. `plot_adversary_map` draws it.

`selection_geometry` puts numbers on the picks of every query: how close to the task
learner's decision boundary (|P(class 1) - 0.5|), how far from the noiseless majority and
minority moons, how dense their neighbourhood, and how spread they are, each next to the same
number for the candidates they were picked from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tavaal.data.synthetic import MOONS_COUNTS, MOONS_NOISE
from tavaal.pool import read_labeled, read_scores
from tavaal.report.style import method_label, method_order

# Neighbours of the local density estimate (mean distance to the k nearest pool points).
DENSITY_NEIGHBOURS = 10


@dataclass
class ReplayedQuery:
    """A finished query's adversary, retrained, with the query's sets (dataset indices)."""

    method: str
    seed: int
    stage: int
    adversary: object  # tavaal.strategies._adversarial.QueryAdversary
    labeled: np.ndarray
    candidates: np.ndarray
    chosen: np.ndarray
    candidate_logits: np.ndarray  # replayed D logits, in the order of `candidates`
    max_logit_difference: float  # |replayed - stored| over the candidates
    models: object | None  # the stage's TrainedModels (TA-VAAL: with its Ranker)
    rank_normalization: str  # vae.rank_normalization of the query
    diagnostics: dict = field(default_factory=dict)  # the stored health of the query


def replay_query_adversary(
    exp,
    method: str,
    seed: int,
    stage: int,
    labeled_path: str | Path,
    scores_path: str | Path,
    model_path: str | Path | None,
    dataset,
    device="cpu",
    log=None,
) -> ReplayedQuery:
    """Retrain the VAE + D of query `stage` of (method, seed) from its input and output files.

    `labeled_path`: the stage's labeled.parquet (the query's input); `scores_path`: the query's
    scores.parquet (candidates, picks and the logits to compare with); `model_path`: the stage's
    model.pt (TA-VAAL's Ranker; also loaded for VAAL when given, for the decision boundary).
    """
    from tavaal.stage import unlabeled_pool
    from tavaal.strategies import QueryContext, strategy_class
    from tavaal.strategies._adversarial import train_query_adversary
    from tavaal.training import load_task_models, resolve_device

    if method not in ("vaal", "tavaal"):
        raise ValueError(f"only VAAL and TA-VAAL queries train an adversary, not {method!r}")
    device = resolve_device(device)
    labeled = np.sort(read_labeled(labeled_path, expected_stage=stage).indices)
    scores, metadata = read_scores(scores_path)
    candidates = scores["index"].to_numpy(np.int64)
    stored = scores["disc_logit"].to_numpy(np.float64)
    chosen = candidates[scores["chosen"].to_numpy(bool)]
    n_train = dataset.info.n_train
    unlabeled = unlabeled_pool(exp, n_train, labeled, seed)
    models = None
    if model_path is not None:
        recipe = strategy_class(method).recipe
        models = load_task_models(Path(model_path), exp, recipe, dataset.info, device)
    ctx = QueryContext(
        experiment=exp,
        method=method,
        seed=seed,
        stage=stage,
        dataset=dataset,
        labeled=labeled,
        candidates=candidates,
        unlabeled=unlabeled,
        budget=exp.budget,
        device=device,
        models=models,
        log=log or (lambda _message: None),
    )
    adversary = train_query_adversary(ctx, conditional=method == "tavaal")
    logits = _disc_logits_of_rows(adversary, adversary.cand_pos, device)
    return ReplayedQuery(
        method=method,
        seed=seed,
        stage=stage,
        adversary=adversary,
        labeled=labeled,
        candidates=candidates,
        chosen=chosen,
        candidate_logits=logits,
        max_logit_difference=float(np.max(np.abs(logits - stored))) if len(stored) else 0.0,
        models=models,
        rank_normalization=exp.vae.rank_normalization,
        diagnostics=dict(metadata.get("diagnostics", {})),
    )


def _disc_logits_of_rows(adversary, positions: np.ndarray, device) -> np.ndarray:
    from tavaal.adversarial import score_rows

    return score_rows(adversary.trained, adversary.data, positions, device).logits


@dataclass
class AdversaryMap:
    """One query's adversary evaluated over the plane (see the module doc)."""

    method: str
    seed: int
    stage: int
    labeled: np.ndarray  # dataset indices labeled before the query
    candidates: np.ndarray
    chosen: np.ndarray
    grid_x: np.ndarray  # (R, R)
    grid_y: np.ndarray
    disc_logit: np.ndarray  # (R, R) D's logit at (mu(x)[, r(x)])
    rank_input: np.ndarray | None  # (R, R) D's rank input r(x) (TA-VAAL), else None
    class1_prob: np.ndarray | None  # (R, R) P(class 1) of the stage's task learner
    true_class1_prob: np.ndarray  # (R, R) P(class 1 | x) of the generating process
    latent_labeled: np.ndarray  # (n_labeled, 2) latent means on their first 2 PCs
    latent_candidates: np.ndarray  # (n_candidates, 2)
    explained_variance: np.ndarray  # share of the latent means' variance of PC 1 and 2
    diagnostics: dict = field(default_factory=dict)
    max_logit_difference: float = 0.0


def plane_grid(
    x: np.ndarray, resolution: int = 120, margin: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid_x, grid_y, points (R*R, 2) float32) covering 2-D points `x` plus `margin`."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"a plane grid needs 2-D points, got shape {x.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def principal_components(values: np.ndarray, reference: np.ndarray, k: int = 2):
    """Project `values` on the first `k` principal components of `reference` (centred on its
    mean); also the share of the reference's variance each component explains."""
    reference = np.asarray(reference, dtype=np.float64)
    mean = reference.mean(axis=0)
    _, singular, vt = np.linalg.svd(reference - mean, full_matrices=False)
    variance = singular**2
    share = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    k = min(k, vt.shape[0])
    projected = (np.asarray(values, dtype=np.float64) - mean) @ vt[:k].T
    if k < 2:  # a 1-D latent: pad so the scatter still has two coordinates
        projected = np.c_[projected, np.zeros((len(projected), 2 - k))]
        share = np.r_[share, np.zeros(2 - len(share))]
    return projected, share[:2]


def adversary_map(
    replayed: ReplayedQuery, dataset, resolution: int = 120, margin: float = 0.5, device="cpu"
) -> AdversaryMap:
    """Evaluate a replayed adversary over a grid of the (2-D) input plane."""
    import torch

    from tavaal.adversarial import InputBank
    from tavaal.adversarial.conditioning import normalise_rank_against
    from tavaal.inference import forward_pool

    adversary = replayed.adversary
    trained = adversary.trained
    gx, gy, points = plane_grid(dataset.x_train, resolution, margin)
    everything = np.arange(len(points))
    vae, disc = trained.vae, trained.discriminator
    vae.eval()
    disc.eval()
    vae_device = next(vae.parameters()).device
    bank = InputBank.load(points, everything, dataset.info, vae_device)

    rank_input = None
    class1_prob = None
    if replayed.models is not None:
        model = replayed.models.models[0]
        ranker = replayed.models.ranker if adversary.raw_r is not None else None
        out = forward_pool(
            model, points, everything, dataset.info, model.classifier.weight.device, 4096, ranker
        )
        class1_prob = torch.softmax(torch.from_numpy(out.logits), dim=1)[:, 1].numpy()
        if ranker is not None:
            _, rank_input = normalise_rank_against(
                out.predicted_loss, adversary.raw_r, replayed.rank_normalization
            )
    with torch.no_grad():
        mu, _ = vae.encode(bank[torch.arange(len(points), device=bank.device)].to(vae_device))
        r = None
        if rank_input is not None:
            r = torch.from_numpy(np.asarray(rank_input, dtype=np.float32)).to(vae_device)
        logits = disc(mu, r).double().cpu().numpy()

    mu_lab = _latent_means(adversary, adversary.lab_pos, vae_device)
    mu_cand = _latent_means(adversary, adversary.cand_pos, vae_device)
    reference = np.r_[mu_lab, mu_cand]
    lab2, share = principal_components(mu_lab, reference)
    cand2, _ = principal_components(mu_cand, reference)
    shape = gx.shape
    return AdversaryMap(
        method=replayed.method,
        seed=replayed.seed,
        stage=replayed.stage,
        labeled=replayed.labeled,
        candidates=replayed.candidates,
        chosen=replayed.chosen,
        grid_x=gx,
        grid_y=gy,
        disc_logit=logits.reshape(shape),
        rank_input=None if rank_input is None else np.asarray(rank_input).reshape(shape),
        class1_prob=None if class1_prob is None else class1_prob.reshape(shape),
        true_class1_prob=bayes_class1_probability(points).reshape(shape),
        latent_labeled=lab2,
        latent_candidates=cand2,
        explained_variance=share,
        diagnostics=replayed.diagnostics,
        max_logit_difference=replayed.max_logit_difference,
    )


def _latent_means(adversary, positions: np.ndarray, device) -> np.ndarray:
    import torch

    with torch.no_grad():
        rows = torch.from_numpy(np.asarray(positions, dtype=np.int64))
        x = adversary.data.bank[rows.to(adversary.data.bank.device)].to(device)
        mu, _ = adversary.trained.vae.encode(x)
    return mu.double().cpu().numpy()


def plot_adversary_map(
    x_train: np.ndarray, y_train: np.ndarray, maps: Sequence[AdversaryMap]
) -> Figure:
    """One row per query: D's logit over the plane (picks = lowest logits among the
    candidates), D's rank input over the plane (TA-VAAL) and the latent means on their first
    two principal components. Titles carry the query's stored health diagnostics. Solid line:
    the task learner's decision boundary; dashed: the Bayes boundary; open circles: the
    candidates; black: labeled; stars: picks; small grey: the pool (triangles: minority)."""
    maps = sorted(
        maps,
        key=lambda m: (method_order([q.method for q in maps]).index(m.method), m.seed, m.stage),
    )
    fig, axes = plt.subplots(len(maps), 3, figsize=(14, 4.2 * len(maps)), squeeze=False)
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train)
    for row, item in zip(axes, maps, strict=True):
        name = f"{method_label(item.method)}, seed {item.seed}, query {item.stage}"
        health = _health_text(item.diagnostics)
        ax = row[0]
        _plane(ax, x, y, item, item.disc_logit, "RdBu", "D logit (low = picked first)")
        ax.set_title(f"{name}: D logit over the plane\n{health}", fontsize=9)
        ax = row[1]
        if item.rank_input is not None:
            _plane(ax, x, y, item, item.rank_input, "viridis", "D's rank input r(x)")
            ax.set_title(f"{name}: rank input of D (high = high predicted loss)", fontsize=9)
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "VAAL: D sees mu only", ha="center", va="center")
        ax = row[2]
        chosen = np.isin(item.candidates, item.chosen)
        ax.scatter(*item.latent_candidates[~chosen].T, s=8, color="grey", label="candidates")
        ax.scatter(*item.latent_labeled.T, s=14, color="black", label="labeled")
        ax.scatter(
            *item.latent_candidates[chosen].T, s=40, marker="*", color="crimson", label="selected"
        )
        share = item.explained_variance
        ax.set_xlabel(f"latent PC 1 ({share[0]:.0%} of variance)")
        ax.set_ylabel(f"latent PC 2 ({share[1]:.0%})")
        ax.set_title(f"{name}: latent means mu", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("what the adversary learned (replayed query; issue 9)")
    fig.tight_layout()
    return fig


def _plane(ax, x, y, item: AdversaryMap, values, cmap: str, label: str) -> None:
    finite = values[np.isfinite(values)]
    if cmap == "RdBu" and len(finite):
        bound = float(np.max(np.abs(finite))) or 1.0
        mesh = ax.pcolormesh(
            item.grid_x, item.grid_y, values, cmap=cmap, vmin=-bound, vmax=bound, shading="auto"
        )
    else:
        mesh = ax.pcolormesh(item.grid_x, item.grid_y, values, cmap=cmap, shading="auto")
    ax.figure.colorbar(mesh, ax=ax, label=label, fraction=0.046)
    if item.class1_prob is not None:
        ax.contour(
            item.grid_x, item.grid_y, item.class1_prob, levels=[0.5], colors="k", linewidths=1
        )
    ax.contour(
        item.grid_x,
        item.grid_y,
        item.true_class1_prob,
        levels=[0.5],
        colors="k",
        linewidths=1,
        linestyles="dashed",
    )
    ax.scatter(x[y == 0, 0], x[y == 0, 1], s=2, color="dimgrey", alpha=0.4, marker="o")
    ax.scatter(x[y == 1, 0], x[y == 1, 1], s=6, color="dimgrey", alpha=0.6, marker="^")
    ax.scatter(
        x[item.candidates, 0], x[item.candidates, 1], s=10, facecolor="none", edgecolor="grey"
    )
    ax.scatter(x[item.labeled, 0], x[item.labeled, 1], s=14, color="black")
    ax.scatter(x[item.chosen, 0], x[item.chosen, 1], s=40, marker="*", color="crimson")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def _health_text(diagnostics: dict) -> str:
    if not diagnostics:
        return ""
    parts = []
    if "vae_recon_mse" in diagnostics and diagnostics.get("mean_image_mse"):
        ratio = diagnostics["vae_recon_mse"] / diagnostics["mean_image_mse"]
        parts.append(f"recon/mean {ratio:.2f}")
    if "latent_mu_std" in diagnostics:
        parts.append(f"latent std {diagnostics['latent_mu_std']:.2f}")
    if "disc_auc" in diagnostics:
        parts.append(f"D AUC {diagnostics['disc_auc']:.2f}")
    return ", ".join(parts)


# ------------------------------------------------------------------------ selection geometry


def moon_arcs(counts: tuple[int, int] = MOONS_COUNTS) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless points of scikit-learn's make_moons: `counts[0]` evenly spaced on the upper
    moon (class 0, our majority) and `counts[1]` on the lower moon (class 1, our minority);
    make_moons adds Gaussian noise of std `noise` to exactly these points."""
    upper_t = np.linspace(0.0, np.pi, counts[0])
    lower_t = np.linspace(0.0, np.pi, counts[1])
    upper = np.c_[np.cos(upper_t), np.sin(upper_t)]
    lower = np.c_[1.0 - np.cos(lower_t), 0.5 - np.sin(lower_t)]
    return upper, lower


def bayes_class1_probability(
    points: np.ndarray,
    noise: float = MOONS_NOISE,
    counts: tuple[int, int] = MOONS_COUNTS,
    chunk: int = 4096,
) -> np.ndarray:
    """P(class 1 | x) under the process that generated the moons: an equal-weight mixture of
    isotropic Gaussians (std `noise`) on the noiseless points of `moon_arcs`. Its 0.5 level is
    the Bayes decision boundary ("oracle boundary" of TA-VAAL Fig. 1), which the x10 imbalance
    pushes towards the minority moon."""
    upper, lower = moon_arcs(counts)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)

    def log_mass(part: np.ndarray, centres: np.ndarray) -> np.ndarray:
        squared = ((part[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        exponent = -squared / (2.0 * noise**2)
        top = exponent.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(exponent - top).sum(axis=1, keepdims=True)))[:, 0]

    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk]
        out[start : start + chunk] = 1.0 / (
            1.0 + np.exp(log_mass(part, upper) - log_mass(part, lower))
        )
    return out


def level_set_points(
    grid_x: np.ndarray, grid_y: np.ndarray, values: np.ndarray, level: float = 0.5
) -> np.ndarray:
    """(M, 2) points where `values` on the grid crosses `level`: the midpoints of the grid
    edges whose ends lie on either side (the level set at the grid's resolution)."""
    above = np.asarray(values) > level
    across = above[:, 1:] != above[:, :-1]  # along x
    down = above[1:, :] != above[:-1, :]  # along y
    horizontal = np.c_[(grid_x[:, 1:] + grid_x[:, :-1])[across] / 2, grid_y[:, 1:][across]]
    vertical = np.c_[grid_x[1:, :][down], (grid_y[1:, :] + grid_y[:-1, :])[down] / 2]
    return np.r_[horizontal, vertical]


def bayes_boundary(x_train: np.ndarray, resolution: int = 300) -> np.ndarray:
    """Points of the Bayes decision boundary over the plane around `x_train`."""
    gx, gy, points = plane_grid(x_train, resolution)
    return level_set_points(gx, gy, bayes_class1_probability(points).reshape(gx.shape))


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


@dataclass
class QueryPicks:
    """One finished query, for `selection_geometry` (dataset indices throughout)."""

    method: str
    seed: int
    stage: int
    candidates: np.ndarray
    chosen: np.ndarray
    labeled: np.ndarray  # labeled before the query
    model_boundary: np.ndarray | None = None  # (M, 2) points of the task learner's boundary
    # The query's score table (scores.parquet), for the Ranker and discriminator columns.
    scores: pd.DataFrame | None = None
    # TA-VAAL: D's rank input of the labeled points, normalised as in the query.
    labeled_rank_input: np.ndarray | None = None
    # The query's stored diagnostics (VAAL / TA-VAAL: the adversary's health).
    diagnostics: dict | None = None


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


# ------------------------------------------------------------------------------ from files


def adversary_map_figure(
    exp,
    labeled_paths: Sequence[str | Path],
    scores_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    seed: int,
    stage: int,
    device: str = "cpu",
    log=None,
) -> Figure:
    """The adversary map of query `stage` of `seed`, one row per adversarial method, from the
    query's labeled.parquet (its input), scores.parquet and the stage's model.pt."""
    from tavaal.stage import load_experiment_dataset

    dataset = load_experiment_dataset(exp, Path(dataset_dir).parent)
    maps = []
    for labeled, scores, model in zip(labeled_paths, scores_paths, model_paths, strict=True):
        method = read_scores(scores)[1]["method"]
        replayed = replay_query_adversary(
            exp, method, seed, stage, labeled, scores, model, dataset, device, log
        )
        if log is not None:
            log(
                f"{method}: replayed D logits differ from the stored ones by at most "
                f"{replayed.max_logit_difference:.3g}"
            )
        maps.append(adversary_map(replayed, dataset, device=device))
    return plot_adversary_map(dataset.x_train, dataset.y_train, maps)


def selection_geometry_table(
    exp,
    scores_paths: Sequence[str | Path],
    labeled_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    device: str = "cpu",
    resolution: int = 200,
) -> pd.DataFrame:
    """`selection_geometry` of every query whose scores.parquet is given, with the labeled set
    it started from and the model it queried with (same order as `scores_paths`); the model's
    decision boundary is found on a grid of `resolution` x `resolution` points. For TA-VAAL the
    labeled points' rank inputs are recomputed from the model's Ranker, normalised as in the
    query, and checked against the candidates' stored ones."""
    import torch

    from tavaal.adversarial import normalise_rank
    from tavaal.inference import forward_pool
    from tavaal.stage import load_experiment_dataset, unlabeled_pool
    from tavaal.strategies import strategy_class
    from tavaal.training import load_task_models, resolve_device

    dataset = load_experiment_dataset(exp, Path(dataset_dir).parent)
    device = resolve_device(device)
    gx, gy, points = plane_grid(dataset.x_train, resolution)
    everything = np.arange(len(points))
    n_train = dataset.info.n_train
    queries = []
    for scores_path, labeled_path, model_path in zip(
        scores_paths, labeled_paths, model_paths, strict=True
    ):
        scores, metadata = read_scores(scores_path)
        method, seed, stage = metadata["method"], int(metadata["seed"]), int(metadata["stage"])
        labeled = np.sort(read_labeled(labeled_path, expected_stage=stage).indices)
        candidates = scores["index"].to_numpy(np.int64)
        chosen = candidates[scores["chosen"].to_numpy(bool)]
        recipe = strategy_class(method).recipe
        trained = load_task_models(Path(model_path), exp, recipe, dataset.info, device)
        model = trained.models[0]
        logits = forward_pool(model, points, everything, dataset.info, device, 8192).logits
        prob = torch.softmax(torch.from_numpy(logits), dim=1)[:, 1].numpy().reshape(gx.shape)
        labeled_rank = None
        if "rank_input" in scores and trained.ranker is not None:
            if exp.vae.train_on == "subset":
                pool = candidates
            else:
                pool = unlabeled_pool(exp, n_train, labeled, seed)
            indices = np.union1d(labeled, pool)
            raw = forward_pool(
                model, dataset.x_train, indices, dataset.info, device, ranker=trained.ranker
            ).predicted_loss
            _, rank = normalise_rank(raw.astype(np.float32), exp.vae.rank_normalization)
            stored = scores["rank_input"].to_numpy(np.float64)
            again = rank[np.searchsorted(indices, candidates)]
            if not np.allclose(again, stored, rtol=1e-5, atol=1e-6):
                raise ValueError(f"{scores_path}: recomputed rank inputs differ from the stored")
            labeled_rank = rank[np.searchsorted(indices, labeled)]
        queries.append(
            QueryPicks(
                method=method,
                seed=seed,
                stage=stage,
                candidates=candidates,
                chosen=chosen,
                labeled=labeled,
                model_boundary=level_set_points(gx, gy, prob),
                scores=scores,
                labeled_rank_input=labeled_rank,
                diagnostics=metadata.get("diagnostics"),
            )
        )
    return selection_geometry(dataset.x_train, dataset.y_train, queries)


def summarise_geometry(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over the seeds and queries of each method of `selection_geometry`'s columns."""
    columns = [c for c in table.columns if c not in ("method", "seed", "stage")]
    order = method_order(table["method"])
    grouped = table.groupby("method")[columns].mean()
    grouped.insert(0, "queries", table.groupby("method").size())
    return grouped.loc[order].reset_index()
