"""VAAL + learning loss (TA-VAAL §5.1, Fig. 6): TA-VAAL's conditional VAE + discriminator, with
r from the original Learning-Loss module (margin loss, Yoo & Kweon 2019) instead of the Ranker
trained with the ranking loss (TA-VAAL eq. 1)."""

from __future__ import annotations

from tavaal.adversarial import ADVERSARIAL
from tavaal.strategies._adversarial import adversarial_query
from tavaal.strategies._common import require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy
from tavaal.strategies.registry import register_strategy
from tavaal.training import MARGIN_RANKER


@register_strategy
class VAALLearningLoss(Strategy):
    """The lowest D(r, mu), r the normalised output of the margin-loss module (as lloss trains
    it); isolates what the ranking loss adds to TA-VAAL."""

    name = "vaal_lloss"
    uses_task_model = True
    query_reads = ("vae",)
    adversary = ADVERSARIAL
    recipe = MARGIN_RANKER

    def query(self, ctx: QueryContext) -> QueryResult:
        require_models(ctx, ranker=True)
        return adversarial_query(ctx, conditional=True)
