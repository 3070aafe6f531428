"""Ensemble variation ratio (Beluch et al. 2018 §3): the candidates on which the most of the M
independently trained task learners disagree with the ensemble's modal prediction."""

from __future__ import annotations

import math
import time

from tavaal.strategies._common import (
    ensemble_scores,
    log_done,
    mean_summary,
    require_models,
)
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy
from tavaal.training import ENSEMBLE
from tavaal.uncertainty import with_tie_break


@register_strategy
class EnsembleVarRatio(Strategy):
    name = "ensemble_varr"
    uses_task_model = True
    recipe = ENSEMBLE

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        members = require_models(ctx).models
        scores = ensemble_scores(ctx, members)
        ratio, mean_entropy = scores.variation_ratio, scores.mean_entropy
        # M + 1 possible ratios (M = 5 by default): ties within a ratio go to the higher entropy
        # of the ensemble's mean prediction, then to the smaller index (top_k).
        score = with_tie_break(ratio, len(members), mean_entropy, math.log(scores.classes))
        chosen = top_k(ctx.candidates, score, ctx.budget)
        seconds = log_done(ctx, started)
        if len(members) < 2:
            ctx.log(f"{ctx.method}: only {len(members)} ensemble member; every ratio is 0")
        return QueryResult(
            chosen=chosen,
            scores=score_table(
                ctx.candidates, score, chosen, var_ratio=ratio, entropy=mean_entropy
            ),
            diagnostics={
                "query_seconds": seconds,
                "ensemble_size": float(len(members)),
                **mean_summary("var_ratio", ratio, ctx.candidates, chosen),
            },
        )
