"""Plumbing shared by the baseline strategies: model lookup, inference over candidates, logging."""

from __future__ import annotations

import time

import numpy as np
import torch

from tavaal.errors import CheckpointError
from tavaal.inference import InferenceOutput, forward_pool, mc_dropout_probabilities
from tavaal.seeding import derive_seed
from tavaal.strategies.base import QueryContext
from tavaal.uncertainty import softmax


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
    in the context for the stage runner's true loss."""
    indices = np.asarray(indices, dtype=np.int64)
    out = forward_pool(
        model,
        ctx.dataset.x_train,
        indices,
        ctx.dataset.info,
        ctx.device,
        batch_size=ctx.experiment.query.inference_batch_size,
        ranker=ranker,
    )
    if ctx.models is not None and model is ctx.models.models[0]:
        ctx.remember_logits(indices, out.logits)
    return out


def candidate_probabilities(ctx: QueryContext, model) -> np.ndarray:
    """Softmax outputs (N, K), float64, of one deterministic pass over the candidates."""
    return softmax(infer(ctx, model, ctx.candidates).logits)


def mc_probabilities(ctx: QueryContext, model) -> np.ndarray:
    """(T, N, K) softmax outputs of T = query.mc_samples MC-dropout passes over the candidates.

    The dropout masks are seeded from (seed, stage, "query/mc_dropout"), so reruns match.
    """
    if not any(_is_active_dropout(m) for m in model.modules()):
        ctx.log(
            f"{ctx.method}: the task model has no dropout with p > 0 (train.dropout = "
            f"{ctx.experiment.train.dropout}); all MC passes agree"
        )
    out = mc_dropout_probabilities(
        model,
        ctx.dataset.x_train,
        np.asarray(ctx.candidates, dtype=np.int64),
        ctx.dataset.info,
        ctx.device,
        samples=ctx.experiment.query.mc_samples,
        generator_seed=derive_seed(ctx.seed, ctx.stage, "query/mc_dropout"),
        batch_size=ctx.experiment.query.inference_batch_size,
    )
    ctx.remember_logits(ctx.candidates, out.logits)
    return out.probabilities.astype(np.float64)


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
