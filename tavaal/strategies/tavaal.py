"""TA-VAAL (Kim et al. 2021): VAAL whose decoder and discriminator are conditioned on the Ranker."""

from __future__ import annotations

from tavaal.adversarial import run_adversarial_query
from tavaal.strategies import register_strategy
from tavaal.strategies._common import require_models
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k


@register_strategy
class TAVAAL(Strategy):
    """Conditional VAE + discriminator on (mu, r), r the normalised Ranker output.

    The task learner is trained with the ranking loss (TA-VAAL eq. 1-2); its Ranker's output r on
    labeled and unlabeled points conditions the decoder (eq. 4) and D (eq. 3, 5, 6), normalised
    per `vae.rank_normalization`. Selects the lowest D(r, mu) (eq. 7): score = 1 - P(labeled).
    Columns: disc_output (P), predicted_loss (raw r), rank_input (the r that D got).
    """

    name = "tavaal"
    uses_task_model = True
    ranker_loss = "ranking"

    def query(self, ctx: QueryContext) -> QueryResult:
        require_models(ctx, ranker=True)
        result = run_adversarial_query(ctx, conditional=True)
        chosen = top_k(ctx.candidates, result.unlabeled_score, ctx.budget)
        scores = score_table(
            ctx.candidates,
            result.unlabeled_score,
            chosen,
            disc_output=result.disc_output,
            predicted_loss=result.predicted_loss,
            rank_input=result.rank_input,
        )
        return QueryResult(chosen=chosen, scores=scores, diagnostics=result.diagnostics)
