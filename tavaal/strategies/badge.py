"""BADGE (Ash et al., ICLR 2020): k-means++ seeding on gradient embeddings.

A candidate's gradient embedding is the gradient of the cross-entropy at its predicted label ŷ
w.r.t. the task learner's last linear layer weight: ``(softmax − onehot(ŷ)) ⊗ h``, h the
penultimate features (the input of the classifier's final dropout + linear layer, eval mode).
Its norm grows with the model's uncertainty and the features' magnitude; k-means++ seeding
(D² sampling) picks points both large and spread out (Ash et al. §3, Alg. 1). The bias gradient
is left out, as in Ash et al.'s code.

Scores, so that higher means picked first: the pick made at step p (0-based) scores
``budget − p``; every other candidate ``d / (1 + d)`` in [0, 1), d its distance to the nearest
pick in gradient-embedding space. `gradient_norm` is |g| of every candidate. Classification
only: a segmentation model's last layer is a per-pixel convolution whose gradient is a sum over
pixels, not one outer product (the experiment check names `methods`).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from tavaal.diversity import gradient_embedding_residual, kmeans_pp_seeding
from tavaal.errors import ConfigError
from tavaal.strategies._common import infer, log_done, mean_summary, require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table
from tavaal.strategies.registry import register_strategy
from tavaal.tasks import task_of

# Bytes of candidate features held as float64 at once; a pool whose features fit is converted
# once (about 3x faster than block by block at 10,000 x 512).
FEATURE_BLOCK_BYTES = 256 * 2**20


@register_strategy
class Badge(Strategy):
    name = "badge"
    uses_task_model = True
    tasks = ("classification",)

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        task = task_of(ctx.dataset.info)
        if task.name not in self.tasks:
            raise ConfigError(
                f"method {self.name!r} selects on classification datasets only; "
                f"{ctx.dataset.info.name} is a {task.name} dataset"
            )
        model = require_models(ctx).models[0]
        candidates = np.asarray(ctx.candidates, dtype=np.int64)
        out = infer(ctx, model, candidates)
        residual = torch.from_numpy(gradient_embedding_residual(out.logits)).to(ctx.device)
        features = torch.from_numpy(out.embedding).to(ctx.device)
        rows = max(1, FEATURE_BLOCK_BYTES // (8 * max(features.shape[1], 1)))
        result = kmeans_pp_seeding(residual, features, ctx.budget, ctx.rng("badge"), rows)
        chosen = candidates[result.order]
        distance = result.final_distance
        # Strictly below 1, the last pick's score, even for distances too large for d / (1 + d).
        score = np.minimum(distance / (1.0 + distance), np.nextafter(1.0, 0.0))
        score[result.order] = ctx.budget - np.arange(len(result.order), dtype=np.float64)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(candidates, score, chosen, gradient_norm=result.gradient_norm),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("gradient_norm", result.gradient_norm, candidates, chosen),
            },
        )
