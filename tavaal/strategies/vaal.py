"""VAAL (Sinha et al. 2019): pick the candidates the discriminator finds least "labeled"."""

from __future__ import annotations

from tavaal.adversarial import ADVERSARIAL
from tavaal.strategies._adversarial import adversarial_query
from tavaal.strategies.base import QueryContext, QueryResult, Strategy
from tavaal.strategies.registry import register_strategy


@register_strategy
class VAAL(Strategy):
    """A VAE and a discriminator D trained adversarially inside the query (VAAL Alg. 1).

    Selects the `budget` candidates with the lowest D(mu) (VAAL Alg. 2). Task-agnostic: no task
    model is read. Training and scoring: `tavaal.strategies._adversarial`.
    """

    name = "vaal"
    uses_task_model = False
    query_reads = ("vae",)
    adversary = ADVERSARIAL

    def query(self, ctx: QueryContext) -> QueryResult:
        return adversarial_query(ctx, conditional=False)
