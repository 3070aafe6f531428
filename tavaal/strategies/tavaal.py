"""TA-VAAL (Kim et al. 2021): VAAL whose decoder and discriminator are conditioned on the Ranker."""

from __future__ import annotations

from tavaal.adversarial import ADVERSARIAL
from tavaal.strategies._adversarial import adversarial_query
from tavaal.strategies._common import require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy
from tavaal.strategies.registry import register_strategy
from tavaal.training import RANKING_RANKER


@register_strategy
class TAVAAL(Strategy):
    """Conditional VAE + discriminator on (mu, r), r the normalised Ranker output.

    The task learner is trained with the ranking loss (TA-VAAL eq. 1-2); its Ranker's output r on
    labeled and unlabeled points conditions the decoder (eq. 4) and D (eq. 3, 5, 6), normalised
    per `vae.rank_normalization` (`tavaal.adversarial.conditioning`). Selects the lowest
    D(r, mu) (eq. 7).
    """

    name = "tavaal"
    uses_task_model = True
    query_reads = ("vae",)
    adversary = ADVERSARIAL
    recipe = RANKING_RANKER

    def query(self, ctx: QueryContext) -> QueryResult:
        require_models(ctx, ranker=True)
        return adversarial_query(ctx, conditional=True)
