"""BALD: the candidates with the highest mutual information between prediction and weights,
estimated from T MC-dropout passes (Gal et al. 2017, eq. 4; Houlsby et al. 2011)."""

from __future__ import annotations

import time

from tavaal.strategies._common import log_done, mc_scores, mean_summary, require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy


@register_strategy
class Bald(Strategy):
    name = "bald"
    uses_task_model = True
    query_reads = ("query.mc_samples",)
    needs_dropout = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        scores = mc_scores(ctx, require_models(ctx).models[0])
        values = scores.bald
        chosen = top_k(ctx.candidates, values, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(
                ctx.candidates, values, chosen, bald=values, entropy=scores.mean_entropy
            ),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("bald", values, ctx.candidates, chosen),
            },
        )
