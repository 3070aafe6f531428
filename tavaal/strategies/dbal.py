"""DBAL (Gal, Islam & Ghahramani 2017) as VAAL §4 uses it: the candidates with the highest
entropy of the mean prediction over T MC-dropout passes ("max-entropy" acquisition).

Not BALD: BALD subtracts the mean per-pass entropy (the mutual information, `bald`); VAAL's
DBAL baseline samples "using their proposed max-entropy scheme".
"""

from __future__ import annotations

import time

from tavaal.strategies._common import log_done, mc_scores, mean_summary, require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy


@register_strategy
class DBAL(Strategy):
    name = "dbal"
    uses_task_model = True
    query_reads = ("query.mc_samples",)
    needs_dropout = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        values = mc_scores(ctx, require_models(ctx).models[0], with_bald=False).mean_entropy
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
