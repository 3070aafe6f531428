"""Variation ratio over T MC-dropout passes (Gal et al. 2017 §3): the candidates on which the
most passes disagree with the modal prediction."""

from __future__ import annotations

import math
import time

from tavaal.strategies._common import log_done, mc_scores, mean_summary, require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy
from tavaal.uncertainty import with_tie_break


@register_strategy
class VarRatio(Strategy):
    name = "var_ratio"
    uses_task_model = True
    query_reads = ("query.mc_samples",)
    needs_dropout = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        scores = mc_scores(ctx, require_models(ctx).models[0], with_bald=False)
        ratio, mean_entropy = scores.variation_ratio, scores.mean_entropy
        passes = ctx.experiment.query.mc_samples
        # The ratio takes only T + 1 values; within a value, the higher entropy of the mean
        # prediction goes first (then the smaller index, in top_k).
        score = with_tie_break(ratio, passes, mean_entropy, math.log(scores.classes))
        chosen = top_k(ctx.candidates, score, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(
                ctx.candidates, score, chosen, var_ratio=ratio, entropy=mean_entropy
            ),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("var_ratio", ratio, ctx.candidates, chosen),
            },
        )
