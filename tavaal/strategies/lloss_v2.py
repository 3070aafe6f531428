"""Learning Loss with the ranker trained by TA-VAAL's ranking loss (TA-VAAL eq. 1, §5.1 'lloss
v2'): the same query as lloss, the candidates with the highest predicted loss (rank)."""

from __future__ import annotations

from tavaal.strategies.lloss import PredictedLoss
from tavaal.strategies.registry import register_strategy
from tavaal.training import RANKING_RANKER


@register_strategy
class LearningLossV2(PredictedLoss):
    name = "lloss_v2"
    recipe = RANKING_RANKER
