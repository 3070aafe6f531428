"""VAAL without its VAE (VAAL §5.1, Fig. 4, "eliminating VAE"): a discriminator alone, trained
on the image space to tell labeled from unlabeled samples."""

from __future__ import annotations

from tavaal.adversarial import PIXEL_DISCRIMINATOR
from tavaal.strategies._adversarial import adversarial_query
from tavaal.strategies.base import QueryContext, QueryResult, Strategy
from tavaal.strategies.registry import register_strategy


@register_strategy
class VAALNoVAE(Strategy):
    """D is VAAL's MLP on the flattened normalised inputs (`tavaal.models.PixelDiscriminator`),
    trained for VAAL's schedule with its batches; picks the lowest D logits, as VAAL."""

    name = "vaal_no_vae"
    uses_task_model = False
    query_reads = ("vae",)
    adversary = PIXEL_DISCRIMINATOR

    def query(self, ctx: QueryContext) -> QueryResult:
        return adversarial_query(ctx, conditional=False, variant=PIXEL_DISCRIMINATOR)
