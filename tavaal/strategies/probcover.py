"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022): greedy maximum coverage of
δ-balls around labeled and picked points.

On `embedding.source` (the task learner's features, a VAE's codes or a user's file; `_embedding`)
of labeled ∪ candidates: k-means into as many clusters as the dataset has classes, and the ball
radius δ the largest at which 95% of the balls are pure (hold one cluster's points only;
`tavaal.diversity.purity_radius`, §4.2); then each pick is the candidate whose open δ-ball
covers the most points not yet covered by the labeled set and the earlier picks
(`tavaal.diversity.probcover_select`, Alg. 1). δ and its purity are reported with the
coverage before and after the query.

Scores, so that higher means picked first: the pick made at step p (0-based) scores
``budget − p``; every other candidate ``g / (1 + g)`` in [0, 1), g the points its ball would
still cover after the picks. `coverage_gain` is what it would have covered before any pick.
"""

from __future__ import annotations

import time

import numpy as np

from tavaal.diversity import kmeans_labels, probcover_select, purity_radius
from tavaal.strategies._common import log_done
from tavaal.strategies._embedding import query_embedding
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table
from tavaal.strategies.registry import register_strategy


@register_strategy
class ProbCover(Strategy):
    name = "probcover"
    uses_task_model = True
    reads_embedding = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        candidates = np.asarray(ctx.candidates, dtype=np.int64)
        labeled = np.asarray(ctx.labeled, dtype=np.int64)
        points = np.asarray(query_embedding(ctx), dtype=np.float64)
        rng = ctx.rng("probcover")
        clusters = max(1, min(ctx.dataset.info.num_classes, len(points)))
        # sklearn's k-means takes a 32-bit seed.
        assignment = kmeans_labels(points, clusters, int(rng.integers(2**31)))
        delta, purity = purity_radius(points, assignment)
        result = probcover_select(
            points[: len(labeled)], points[len(labeled) :], ctx.budget, delta, rng
        )
        chosen = candidates[result.order]
        score = np.minimum(result.final_gain / (1.0 + result.final_gain), np.nextafter(1.0, 0.0))
        score[result.order] = ctx.budget - np.arange(len(result.order), dtype=np.float64)
        seconds = log_done(ctx, started)
        ctx.log(
            f"{ctx.method}: ball radius {delta:.4g} (purity {purity:.3f}); covered "
            f"{result.covered_before:.3f} -> {result.covered_after:.3f} of labeled + candidates"
        )
        return QueryResult(
            chosen=chosen,
            scores=score_table(candidates, score, chosen, coverage_gain=result.initial_gain),
            diagnostics={
                "query_seconds": seconds,
                "ball_radius": delta,
                "ball_purity": purity,
                "coverage_before": result.covered_before,
                "coverage_after": result.covered_after,
            },
        )
