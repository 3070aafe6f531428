"""VAAL (Sinha et al. 2019): pick the candidates the discriminator finds least "labeled"."""

from __future__ import annotations

from tavaal.adversarial import run_adversarial_query
from tavaal.strategies import register_strategy
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k


@register_strategy
class VAAL(Strategy):
    """A VAE and a discriminator D trained adversarially inside the query (VAAL Alg. 1).

    Selects the `budget` candidates with the lowest P(labeled) = sigmoid(D(mu)) (VAAL Alg. 2):
    score = 1 - P, the likelihood of being unlabeled. Task-agnostic: no task model is read.
    Training and scoring live in `tavaal.adversarial`.
    """

    name = "vaal"
    uses_task_model = False

    def query(self, ctx: QueryContext) -> QueryResult:
        result = run_adversarial_query(ctx, conditional=False)
        chosen = top_k(ctx.candidates, result.unlabeled_score, ctx.budget)
        scores = score_table(
            ctx.candidates, result.unlabeled_score, chosen, disc_output=result.disc_output
        )
        return QueryResult(chosen=chosen, scores=scores, diagnostics=result.diagnostics)
