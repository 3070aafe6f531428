"""Margin sampling (Scheffer et al. 2001; Settles 2009 §3.1): the candidates whose two most
probable classes are closest, i.e. the smallest gap p(ŷ1) − p(ŷ2) of the softmax prediction.

Score ``1 − margin`` (higher = picked first, in [0, 1]); the raw gap is the `margin` column. A
segmentation image's margin is the mean margin of its (pooled) pixels, as entropy's per-image
score is (`tavaal.tasks`).
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
from tavaal.uncertainty import margin


@register_strategy
class Margin(Strategy):
    name = "margin"
    uses_task_model = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        model = require_models(ctx).models[0]
        gaps = candidate_uncertainty(ctx, model, margin)
        score = 1.0 - gaps
        chosen = top_k(ctx.candidates, score, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(ctx.candidates, score, chosen, margin=gaps),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("margin", gaps, ctx.candidates, chosen),
            },
        )
