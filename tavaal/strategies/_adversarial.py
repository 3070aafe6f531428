"""The query of VAAL and TA-VAAL: train the adversary on labeled + training pool, score the
candidates, pick the lowest D logits (VAAL Alg. 2, TA-VAAL eq. 7). The ablations of VAAL §5.1
use the same query with another training variant (`tavaal.adversarial.training`): a D on pixels
or on a frozen VAE's codes picks by its logits like VAAL; a plain VAE picks by the
2-Wasserstein distance to the labeled centroid (`wasserstein_query`).

Selection ranks candidates on D's logit itself, lowest first. In float64, 1 - sigmoid(logit)
rounds to exactly 1.0 for every logit below about -36.7, so ranking on P(unlabeled) would tie a
confident discriminator's candidates and hand the choice to the index tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tavaal.adversarial import (
    ADVERSARIAL,
    DEFAULT_MAX_CACHED_BYTES,
    PLAIN_VAE,
    AdversarialData,
    AdversaryScores,
    InputBank,
    TrainedAdversary,
    Variant,
    adversary_diagnostics,
    normalise_rank,
    rank_statistics,
    score_rows,
    sigmoid,
    train_adversary,
    training_iterations,
    wasserstein_to_centroid,
)
from tavaal.errors import CheckpointError, IndexFileError
from tavaal.strategies._common import infer
from tavaal.strategies.base import QueryContext, QueryResult, score_table, top_k


@dataclass
class QueryAdversary:
    """The trained VAE + D of one query and what they were trained on.

    `data` holds the bank of labeled + training pool (rows in the order of `indices`); `lab_pos`
    and `cand_pos` are the bank rows of the labeled set and of the candidates; `raw_r` the raw
    Ranker outputs of every bank row (TA-VAAL only).
    """

    trained: TrainedAdversary
    data: AdversarialData
    indices: np.ndarray
    lab_pos: np.ndarray
    cand_pos: np.ndarray
    raw_r: np.ndarray | None


def train_query_adversary(
    ctx: QueryContext,
    conditional: bool,
    max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
    variant: Variant = ADVERSARIAL,
) -> QueryAdversary:
    """Train the VAE + D of one query (TA-VAAL if conditional), seeded from (seed, stage): the
    same context gives the same adversary, so diagnostics can retrain exactly what a finished
    query used (`tavaal.adversary_replay`)."""
    cfg = ctx.experiment.vae
    info = ctx.dataset.info
    labeled = np.asarray(ctx.labeled, dtype=np.int64)
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    pool = candidates if cfg.train_on == "subset" else np.asarray(ctx.unlabeled, dtype=np.int64)
    overlap = np.intersect1d(labeled, pool)
    if len(overlap):
        raise IndexFileError(f"index {int(overlap[0])} is both labeled and in the unlabeled pool")
    missing = np.setdiff1d(candidates, pool)
    if len(missing):
        raise IndexFileError(f"candidate index {int(missing[0])} is not in the unlabeled pool")
    indices = np.union1d(labeled, pool)  # sorted: sequential reads of the memory map
    lab_pos = np.searchsorted(indices, labeled)
    pool_pos = np.searchsorted(indices, pool)
    cand_pos = np.searchsorted(indices, candidates)

    raw_r = decoder_r = disc_r = None
    if conditional:
        models = ctx.models
        if models is None or models.ranker is None:
            raise CheckpointError(
                f"method {ctx.method!r} needs the stage's model.pt with its Ranker "
                f"(seed {ctx.seed}, stage {ctx.stage})"
            )
        out = infer(ctx, models.models[0], indices, ranker=models.ranker)
        raw_r = np.asarray(out.predicted_loss, dtype=np.float32)
        decoder_r, disc_r = normalise_rank(raw_r, cfg.rank_normalization)

    bank = InputBank.load(
        ctx.dataset.x_train, indices, info, ctx.device, max_cached_bytes, size=cfg.input_size
    )
    data = AdversarialData(
        bank=bank,
        labeled=lab_pos,
        unlabeled=pool_pos,
        decoder_r=decoder_r,
        disc_r=disc_r,
        indices=indices,
    )
    iterations = training_iterations(cfg, len(labeled), len(pool))
    what = "VAE + discriminator" if variant == ADVERSARIAL else variant.replace("_", " ")
    ctx.log(
        f"{ctx.method}: training {what} on {len(labeled)} labeled + {len(pool)} "
        f"unlabeled ({cfg.train_on}), schedule of {iterations} iterations"
    )
    trained = train_adversary(
        data,
        cfg,
        seed=ctx.seed,
        stage=ctx.stage,
        device=ctx.device,
        log=ctx.log,
        checkpoint_path=ctx.resume_path,
        checkpoint_every=ctx.checkpoint_every,
        variant=variant,
    )
    return QueryAdversary(trained, data, indices, lab_pos, cand_pos, raw_r)


def adversarial_query(
    ctx: QueryContext,
    conditional: bool,
    max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
    variant: Variant = ADVERSARIAL,
) -> QueryResult:
    """Train the adversary for one query and pick ctx.budget candidates (TA-VAAL if conditional).

    Columns: disc_logit (D's logit), disc_output (P(labeled)), unlabeled_probability
    (1 - P(labeled), the "likelihood of being unlabeled" the papers plot), and for TA-VAAL
    predicted_loss (raw Ranker output r) and rank_input (what D got as r). score = -disc_logit.
    """
    adversary, cand_scores, lab_scores, diagnostics = _train_and_score(
        ctx, conditional, max_cached_bytes, variant
    )
    data, cand_pos, raw_r = adversary.data, adversary.cand_pos, adversary.raw_r
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    logits = cand_scores.logits.astype(np.float64)
    chosen = top_k(candidates, -logits, ctx.budget)
    columns = {
        "disc_logit": logits,
        "disc_output": sigmoid(logits),
        "unlabeled_probability": sigmoid(-logits),
    }
    if conditional:
        columns["predicted_loss"] = raw_r[cand_pos].astype(np.float64)
        columns["rank_input"] = data.disc_r[cand_pos].astype(np.float64)
    return QueryResult(
        chosen=chosen,
        scores=score_table(candidates, -logits, chosen, **columns),
        diagnostics=diagnostics,
    )


def wasserstein_query(
    ctx: QueryContext, max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES
) -> QueryResult:
    """VAAL §5.1's "no discriminator" ablation: a plain VAE, then the candidates whose latent
    Gaussians are farthest, in 2-Wasserstein distance (eq. 5), from the labeled set's centroid.

    Columns: wasserstein (the distance; score = wasserstein, largest first).
    """
    _, cand_scores, lab_scores, diagnostics = _train_and_score(
        ctx, False, max_cached_bytes, PLAIN_VAE
    )
    distance = wasserstein_to_centroid(
        cand_scores.mu, cand_scores.sigma, lab_scores.mu, lab_scores.sigma
    )
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    chosen = top_k(candidates, distance, ctx.budget)
    return QueryResult(
        chosen=chosen,
        scores=score_table(candidates, distance, chosen, wasserstein=distance),
        diagnostics=diagnostics,
    )


def vae_mean_codes(
    ctx: QueryContext, max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Latent means mu of the labeled rows and of the candidates (in ctx's orders) under a plain
    beta-VAE trained for VAAL's schedule on the query's bank, as `vae_wasserstein` trains it:
    the VAE's codes as an embedding (`embedding.source: vae`)."""
    _, cand_scores, lab_scores, _ = _train_and_score(ctx, False, max_cached_bytes, PLAIN_VAE)
    return lab_scores.mu, cand_scores.mu


def _train_and_score(
    ctx: QueryContext, conditional: bool, max_cached_bytes: int, variant: Variant
) -> tuple[QueryAdversary, AdversaryScores, AdversaryScores, dict[str, float]]:
    """Train the query's adversary (variant), score candidates and labeled rows, log health."""
    adversary = train_query_adversary(ctx, conditional, max_cached_bytes, variant)
    trained, data = adversary.trained, adversary.data
    batch_size = ctx.experiment.query.inference_batch_size
    cand_scores = score_rows(trained, data, adversary.cand_pos, ctx.device, batch_size)
    lab_scores = score_rows(trained, data, adversary.lab_pos, ctx.device, batch_size)
    diagnostics = adversary_diagnostics(trained, cand_scores, lab_scores)
    if conditional:
        diagnostics.update(rank_statistics(adversary.raw_r, data.disc_r))
    ctx.log(
        f"{ctx.method}: recon MSE {diagnostics['vae_recon_mse']:.4f} (mean image "
        f"{diagnostics['mean_image_mse']:.4f}), latent std {diagnostics['latent_mu_std']:.4f}, "
        f"D AUC {diagnostics['disc_auc']:.3f}"
    )
    return adversary, cand_scores, lab_scores, diagnostics
