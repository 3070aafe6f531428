"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022): the most typical candidate of each of the
largest clusters that hold no labeled point yet.

Labeled ∪ candidates are clustered by k-means into |L| + budget clusters (at most 500) on
`embedding.source`: the task learner's penultimate features (eval mode) or a user's file (e.g.
features of a pretrained network, `tavaal.data.embeddings`); clusters are visited by fewest
labeled points, then largest, and each gives its candidate of highest typicality — the inverse
mean Euclidean distance to its 20 nearest neighbours among the cluster's candidates
(`tavaal.diversity.typiclust_select`). Hacohen et al. embed with a self-supervised network
(SimCLR) trained on the whole pool; a file of such features gives their setting.

Scores, so that higher means picked first: the pick made at step p (0-based) scores
``budget − p``; every other candidate ``t / (1 + t)`` in [0, 1), t its typicality in its cluster
(the `typicality` column, before any pick); `cluster` is its k-means cluster.
"""

from __future__ import annotations

import time

import numpy as np

from tavaal.diversity import typiclust_select
from tavaal.strategies._common import log_done, mean_summary
from tavaal.strategies._embedding import query_embedding
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table
from tavaal.strategies.registry import register_strategy


@register_strategy
class TypiClust(Strategy):
    name = "typiclust"
    uses_task_model = True
    reads_embedding = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        candidates = np.asarray(ctx.candidates, dtype=np.int64)
        labeled = np.asarray(ctx.labeled, dtype=np.int64)
        embedding = query_embedding(ctx)
        # sklearn's k-means takes a 32-bit seed.
        random_state = int(ctx.rng("typiclust").integers(2**31))
        result = typiclust_select(
            embedding[: len(labeled)], embedding[len(labeled) :], ctx.budget, random_state
        )
        chosen = candidates[result.order]
        score = np.minimum(result.typicality / (1.0 + result.typicality), np.nextafter(1.0, 0.0))
        score[result.order] = ctx.budget - np.arange(len(result.order), dtype=np.float64)
        seconds = log_done(ctx, started)
        return QueryResult(
            chosen=chosen,
            scores=score_table(
                candidates, score, chosen, typicality=result.typicality, cluster=result.cluster
            ),
            diagnostics={
                "query_seconds": seconds,
                "clusters": float(result.clusters),
                **mean_summary("typicality", result.typicality, candidates, chosen),
            },
        )
