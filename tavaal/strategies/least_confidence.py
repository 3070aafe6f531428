"""Least confidence (Lewis & Gale 1994; Settles 2009 §3.1): the candidates whose most probable
class has the lowest softmax probability.

Score ``1 − max_k p_k`` (higher = picked first); the `confidence` column is max_k p_k. A
segmentation image scores the mean over its (pooled) pixels, as entropy's per-image score does
(`tavaal.tasks`).
"""

from __future__ import annotations

import time

from tavaal.strategies._common import (
    candidate_uncertainty,
    log_done,
    mean_summary,
    require_models,
)
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy
from tavaal.uncertainty import least_confidence


@register_strategy
class LeastConfidence(Strategy):
    name = "least_confidence"
    uses_task_model = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        model = require_models(ctx).models[0]
        score = candidate_uncertainty(ctx, model, least_confidence)
        confidence = 1.0 - score
        chosen = top_k(ctx.candidates, score, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(ctx.candidates, score, chosen, confidence=confidence),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("confidence", confidence, ctx.candidates, chosen),
            },
        )
