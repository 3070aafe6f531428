"""Plumbing shared by the baseline strategies: model lookup, inference over candidates, logging."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from tavaal.errors import CheckpointError
from tavaal.inference import InferenceOutput, forward_pool, logit_batches
from tavaal.seeding import derive_seed
from tavaal.strategies.base import QueryContext
from tavaal.tasks import task_of
from tavaal.uncertainty import PassScores, PassScoreStream, softmax


def require_models(ctx: QueryContext, ranker: bool = False):
    """The stage's trained models, or a CheckpointError naming the method that needs them."""
    if ctx.models is None or not ctx.models.models:
        raise CheckpointError(
            f"method {ctx.method!r} needs the stage-{ctx.stage} task model (model.pt) to query, "
            "but no trained model was given"
        )
    if ranker and ctx.models.ranker is None:
        raise CheckpointError(
            f"method {ctx.method!r} needs the ranker saved with the stage-{ctx.stage} model.pt, "
            "but the checkpoint has none"
        )
    return ctx.models


def infer(ctx: QueryContext, model, indices: np.ndarray, ranker=None) -> InferenceOutput:
    """One eval-mode pass over `indices`; the first model's logits on the candidates are kept
    in the context for the stage runner's true loss (when the task keeps logits)."""
    indices = np.asarray(indices, dtype=np.int64)
    keep = task_of(ctx.dataset.info).keeps_logits
    out = forward_pool(
        model,
        ctx.dataset.x_train,
        indices,
        ctx.dataset.info,
        ctx.device,
        batch_size=ctx.experiment.query.inference_batch_size,
        ranker=ranker,
        keep_logits=keep,
    )
    if keep and ctx.models is not None and model is ctx.models.models[0]:
        ctx.remember_logits(indices, out.logits)
    return out


def candidate_uncertainty(
    ctx: QueryContext, model, measure: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """`measure` (N,) of the softmax prediction (float64) of one deterministic pass over the
    candidates (`entropy`, `margin`, `least_confidence`: softmax rows (r, K) -> (r,) values),
    computed one inference batch at a time: only the (N, K) float32 logits are kept whole (for
    the stage runner's true loss), never an (N, K) float64 array. A segmentation image scores
    the mean measure of its (pooled) pixels (`tavaal.tasks`)."""
    task = task_of(ctx.dataset.info)
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    values = np.zeros(len(candidates), dtype=np.float64)
    logits = None
    for start, stop, (batch,) in _logit_batches(ctx, [model]):
        logits = _keep(ctx, logits, len(candidates), start, stop, batch)
        for lo, hi, rows in task.score_rows(batch):
            values[start + lo : start + hi] = task.sample_scores(measure(softmax(rows)), hi - lo)
    _remember(ctx, model, logits)
    return values


def ensemble_scores(ctx: QueryContext, members) -> PassScores:
    """Variation ratio and entropy of the mean prediction of the ensemble `members` over the
    candidates (their float64 softmax outputs, stacked (M, N, K) conceptually), one inference
    batch at a time: every member scores the batch before the next batch is loaded. On
    segmentation, per pixel of the pooled grid, averaged over each image (QBC)."""
    task = task_of(ctx.dataset.info)
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    stream = PassScoreStream(len(candidates), with_bald=False)
    logits = None
    for start, stop, batch in _logit_batches(ctx, members):
        logits = _keep(ctx, logits, len(candidates), start, stop, batch[0])
        for lo, hi, rows in task.score_rows(np.stack(batch)):
            _add(stream, task, start, lo, hi, softmax(rows))
    _remember(ctx, members[0] if members else None, logits)
    return stream.result()


def mc_scores(ctx: QueryContext, model, with_bald: bool = True) -> PassScores:
    """BALD, variation ratio and entropy of the mean prediction of T = query.mc_samples
    MC-dropout passes over the candidates, one inference batch at a time: a (T, batch, K) block
    of float64 softmax outputs at most, never the whole (T, N, K) array.

    The dropout masks are seeded from (seed, stage, "query/mc_dropout"), so reruns match; they
    are drawn batch by batch, so they (and the scores) depend on query.inference_batch_size.
    A segmentation image scores the mean over its (pooled) pixels (`tavaal.tasks`).
    """
    task = task_of(ctx.dataset.info)
    if not any(_is_active_dropout(m) for m in model.modules()):
        ctx.log(
            f"{ctx.method}: the task model has no dropout with p > 0 (train.dropout = "
            f"{ctx.experiment.train.dropout}); all MC passes agree"
        )
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    stream = PassScoreStream(len(candidates), with_bald, ctx.dataset.info.num_classes)
    logits = None
    batches = task.mc_dropout_batches(
        model,
        ctx.dataset.x_train,
        candidates,
        ctx.dataset.info,
        ctx.device,
        samples=ctx.experiment.query.mc_samples,
        generator_seed=derive_seed(ctx.seed, ctx.stage, "query/mc_dropout"),
        batch_size=ctx.experiment.query.inference_batch_size,
    )
    for start, stop, passes, batch_logits in batches:
        logits = _keep(ctx, logits, len(candidates), start, stop, batch_logits)
        for lo, hi, rows in task.score_rows(passes):
            _add(stream, task, start, lo, hi, rows)
    if task.keeps_logits:
        if logits is None:
            logits = np.zeros((0, ctx.dataset.info.num_classes), dtype=np.float32)
        ctx.remember_logits(candidates, logits)
    return stream.result()


def _add(stream: PassScoreStream, task, start: int, lo: int, hi: int, rows: np.ndarray) -> None:
    """Score a group lo:hi of a batch starting at `start` (rows (T, r, K)) into `stream`."""
    stream.add(
        start + lo, start + hi, rows, reduce=lambda values: task.sample_scores(values, hi - lo)
    )


def _logit_batches(ctx: QueryContext, models):
    return logit_batches(
        models,
        ctx.dataset.x_train,
        np.asarray(ctx.candidates, dtype=np.int64),
        ctx.dataset.info,
        ctx.device,
        ctx.experiment.query.inference_batch_size,
        transform=task_of(ctx.dataset.info).score_logits,
    )


def _keep(
    ctx: QueryContext, logits: np.ndarray | None, n: int, start: int, stop: int, batch: np.ndarray
):
    """The candidates' (N, K) float32 logits, filled batch by batch (for the true loss), when
    the task keeps them (None otherwise)."""
    if not task_of(ctx.dataset.info).keeps_logits:
        return None
    if logits is None:
        logits = np.empty((n, batch.shape[1]), dtype=np.float32)
    logits[start:stop] = batch
    return logits


def _remember(ctx: QueryContext, model, logits: np.ndarray | None) -> None:
    # As `infer`: the first model's logits are kept for the stage runner's true loss.
    if not task_of(ctx.dataset.info).keeps_logits:
        return
    if logits is None:
        logits = np.zeros((0, 0), dtype=np.float32)
    if ctx.models is not None and ctx.models.models and model is ctx.models.models[0]:
        ctx.remember_logits(ctx.candidates, logits)


def log_done(ctx: QueryContext, started: float) -> float:
    """One progress line; returns the seconds spent since `started` (time.perf_counter())."""
    seconds = time.perf_counter() - started
    ctx.log(
        f"{ctx.method}: scored {len(ctx.candidates)} candidates, picked {ctx.budget} "
        f"(seed {ctx.seed}, stage {ctx.stage}) in {seconds:.2f} s"
    )
    return seconds


def _is_active_dropout(module) -> bool:
    # mc_dropout_probabilities switches exactly the nn.Dropout layers to training mode.
    return isinstance(module, torch.nn.Dropout) and module.p > 0


def mean_summary(column: str, values: np.ndarray, candidates: np.ndarray, chosen: np.ndarray):
    """Diagnostics: the mean of a score column over all candidates and over the chosen ones."""
    values = np.asarray(values, dtype=np.float64)
    picked = np.isin(candidates, chosen)
    return {
        f"mean_{column}": float(values.mean()) if len(values) else 0.0,
        f"mean_{column}_chosen": float(values[picked].mean()) if picked.any() else 0.0,
    }
