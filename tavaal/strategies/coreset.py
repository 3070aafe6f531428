"""Core-Set (Sener & Savarese 2018): k-center greedy on the task model's embeddings.

Scores, so that higher means picked first and `top_k` reproduces the greedy order:
- the pick made at greedy step p (0-based) scores ``budget - p`` (budget, ..., 1);
- every other candidate scores ``d / (1 + d)`` in [0, 1), where d is its distance to the final
  centre set (labeled + picks): the order in which further greedy steps would roughly continue.
`min_distance` is each candidate's distance to the labeled set before selection (NaN when the
labeled set is empty; then the first pick is the candidate farthest from the candidates' mean).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from tavaal.diversity import k_center_greedy
from tavaal.strategies._common import infer, log_done, require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table
from tavaal.strategies.registry import register_strategy

# Labeled centres handled per distance block: memory O(candidates * CHUNK).
CHUNK = 1024


@register_strategy
class CoreSet(Strategy):
    name = "coreset"
    uses_task_model = True

    def query(self, ctx: QueryContext) -> QueryResult:
        started = time.perf_counter()
        model = require_models(ctx).models[0]
        candidates = np.asarray(ctx.candidates, dtype=np.int64)
        labeled = np.asarray(ctx.labeled, dtype=np.int64)
        embedding = infer(ctx, model, np.concatenate([labeled, candidates])).embedding
        # The (L + N, E) float32 embeddings are the one whole copy: from_numpy shares them (on
        # the CPU) and the centring is in place. Centring does not change distances but keeps
        # |a|^2 + |b|^2 - 2ab precise in float32.
        points = torch.from_numpy(embedding).to(ctx.device, torch.float32)
        points -= points[len(labeled) :].mean(dim=0, keepdim=True)
        result = k_center_greedy(
            points[len(labeled) :], points[: len(labeled)], ctx.budget, chunk_size=CHUNK
        )
        chosen = candidates[result.order]
        # Strictly below 1, the last pick's score, even for distances too large for d / (1 + d).
        score = np.minimum(
            result.final_distance / (1.0 + result.final_distance), np.nextafter(1.0, 0.0)
        )
        score[result.order] = ctx.budget - np.arange(len(result.order), dtype=np.float64)
        initial = np.where(np.isinf(result.initial_distance), np.nan, result.initial_distance)
        seconds = log_done(ctx, started)
        remaining = np.delete(result.final_distance, result.order)
        return QueryResult(
            chosen=chosen,
            scores=score_table(candidates, score, chosen, min_distance=initial),
            diagnostics={
                "query_seconds": seconds,
                # The k-center objective over the candidates, before and after the picks.
                "max_min_distance_before": _max_or_zero(result.initial_distance),
                "max_min_distance_after": _max_or_zero(remaining),
            },
        )


def _max_or_zero(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.max()) if len(values) else 0.0
