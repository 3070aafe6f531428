"""Replay the adversary of a finished two-moons VAAL / TA-VAAL query, and evaluate it over the
plane (issue 9).

`replay_query_adversary` retrains the VAE + discriminator of a finished query from its files.
Training is seeded from (seed, stage) only, so on the same device the replay is the query's
own adversary: the replayed logits of the candidates are compared with the `disc_logit`
column of the query's scores.parquet and the difference is reported.

`adversary_map` evaluates that adversary over a grid of the input plane: D's logit of
(mu(x)[, r(x)]) (the candidates with the lowest logit are picked), D's rank input r(x) for
TA-VAAL, and the latent means of labeled points and candidates projected on their first two
principal components; `tavaal.report.plot_adversary_map` draws it. `query_picks_from_files`
gathers what `tavaal.report.selection_geometry` measures about each query's picks.

This module sits beside `tavaal.stage`, not in `tavaal.adversarial`: a replay rebuilds the
query's context (the unlabeled pool, the strategy's recipe, the stage's task models), which
the strategies and the stage layer own and the adversary package sits below. torch and those
layers are imported when a replay runs, so the report's figure modules can name these types
without loading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tavaal.data.moons_geometry import bayes_class1_probability, level_set_points, plane_grid
from tavaal.pool import read_labeled, read_scores


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


def replay_adversary_maps(
    exp,
    labeled_paths: Sequence[str | Path],
    scores_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    seed: int,
    stage: int,
    device: str = "cpu",
    log=None,
) -> tuple[object, list[AdversaryMap]]:
    """The experiment's dataset and the adversary map of query `stage` of `seed` for every
    adversarial method given, from the query's labeled.parquet (its input), scores.parquet and
    the stage's model.pt; `tavaal.report.plot_adversary_map` draws them."""
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
    return dataset, maps


def query_picks_from_files(
    exp,
    scores_paths: Sequence[str | Path],
    labeled_paths: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    dataset_dir: str | Path,
    device: str = "cpu",
    resolution: int = 200,
) -> tuple[object, list[QueryPicks]]:
    """The experiment's dataset and the picks of every query whose scores.parquet is given
    (for `tavaal.report.selection_geometry`), with the labeled set it started from and the
    model it queried with (same order as `scores_paths`); the model's decision boundary is
    found on a grid of `resolution` x `resolution` points. For TA-VAAL the
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
    return dataset, queries
