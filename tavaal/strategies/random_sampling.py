"""Random sampling: the budget drawn uniformly without replacement from the candidates."""

from __future__ import annotations

import time

from tavaal.strategies._common import log_done
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy


@register_strategy
class RandomSampling(Strategy):
    name = "random"
    uses_task_model = False

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        # Independent U(0, 1) keys, highest first: a uniformly random ordering of the candidates,
        # so the top `budget` are a uniform sample without replacement. The candidate subset
        # itself was drawn by the stage runner; this is its own seeded role.
        score = ctx.rng("random").random(len(ctx.candidates))
        chosen = top_k(ctx.candidates, score, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(ctx.candidates, score, chosen),
            diagnostics={"query_seconds": seconds},
        )
