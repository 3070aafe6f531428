"""VAAL with a frozen VAE (VAAL §5.1, Fig. 4, "Frozen VAE with D"): the VAE is not trained
adversarially; D learns to tell labeled from unlabeled on its fixed latent codes."""

from __future__ import annotations

from tavaal.adversarial import FROZEN_VAE
from tavaal.strategies._adversarial import adversarial_query
from tavaal.strategies.base import QueryContext, QueryResult, Strategy
from tavaal.strategies.registry import register_strategy


@register_strategy
class VAALFrozenVAE(Strategy):
    """The VAE is trained as a plain beta-VAE (reconstruction + KL, no adversarial term) for
    VAAL's schedule, then frozen; D is trained on its codes mu for as many iterations
    (`tavaal.adversarial.training`). The paper says the VAE is not trained and serves "merely
    as an autoencoder"; an untrained, randomly initialised encoder would not be one, so it is
    trained without the game and frozen before D starts. Picks the lowest D logits."""

    name = "vaal_frozen_vae"
    uses_task_model = False
    query_reads = ("vae",)
    adversary = FROZEN_VAE

    def query(self, ctx: QueryContext) -> QueryResult:
        return adversarial_query(ctx, conditional=False, variant=FROZEN_VAE)
