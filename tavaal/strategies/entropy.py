"""Maximum entropy: the candidates whose softmax prediction has the highest entropy."""

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
from tavaal.uncertainty import entropy


@register_strategy
class Entropy(Strategy):
    name = "entropy"
    uses_task_model = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        model = require_models(ctx).models[0]
        values = candidate_uncertainty(ctx, model, entropy)
        chosen = top_k(ctx.candidates, values, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(ctx.candidates, values, chosen, entropy=values),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("entropy", values, ctx.candidates, chosen),
            },
        )
