"""Learning Loss (Yoo & Kweon 2019): the candidates with the highest loss predicted by the
loss-prediction module trained with the margin ranking loss next to the task learner."""

from __future__ import annotations

import time

import numpy as np

from tavaal.strategies._common import infer, log_done, mean_summary, require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k
from tavaal.strategies.registry import register_strategy
from tavaal.training import MARGIN_RANKER


class PredictedLoss(Strategy):
    """Shared query of lloss and lloss_v2: they differ only in the loss that trains the ranker."""

    uses_task_model = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        models = require_models(ctx, ranker=True)
        out = infer(ctx, models.models[0], ctx.candidates, ranker=models.ranker)
        values = out.predicted_loss.astype(np.float64)
        chosen = top_k(ctx.candidates, values, ctx.budget)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(ctx.candidates, values, chosen, predicted_loss=values),
            diagnostics={
                "query_seconds": seconds,
                **mean_summary("predicted_loss", values, ctx.candidates, chosen),
            },
        )


@register_strategy
class LearningLoss(PredictedLoss):
    name = "lloss"
    recipe = MARGIN_RANKER
