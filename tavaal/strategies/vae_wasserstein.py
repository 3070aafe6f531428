"""VAE + 2-Wasserstein heuristic (VAAL §5.1, Fig. 4, "eliminating D"): no discriminator; the
candidates whose latent Gaussians lie farthest from the labeled set's cluster centroid."""

from __future__ import annotations

from tavaal.adversarial import PLAIN_VAE
from tavaal.strategies._adversarial import wasserstein_query
from tavaal.strategies.base import QueryContext, QueryResult, Strategy
from tavaal.strategies.registry import register_strategy


@register_strategy
class VAEWasserstein(Strategy):
    """A plain beta-VAE trained for VAAL's schedule; score = closed-form 2-Wasserstein distance
    (VAAL eq. 5) of N(mu, diag sigma^2) to the labeled codes' centroid, largest first
    (`tavaal.adversarial.wasserstein_to_centroid`)."""

    name = "vae_wasserstein"
    uses_task_model = False
    query_reads = ("vae",)
    adversary = PLAIN_VAE

    def query(self, ctx: QueryContext) -> QueryResult:
        return wasserstein_query(ctx)
