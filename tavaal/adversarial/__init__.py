"""The VAE + discriminator of VAAL and TA-VAAL, trained and scored inside a query.

- `objectives`: the VAE and discriminator losses (VAAL eq. 1-4, TA-VAAL eq. 3-6);
- `conditioning`: how TA-VAAL's Ranker output r is normalised for the decoder and D;
- `data`: the query's inputs on the device and the seeded batch stream;
- `training`: `train_adversary`, resumable, for VAAL/TA-VAAL and VAAL's §5.1 ablations;
- `scoring`: D's logits on candidates, the 2-Wasserstein heuristic, the health diagnostics.

The query itself (which rows, which conditions, the result table) is the strategies'
`tavaal.strategies._adversarial`.
"""

from tavaal.adversarial.conditioning import (
    RANK_NORMALIZATIONS,
    average_ranks,
    normalise_rank,
    rank_statistics,
    sigmoid,
)
from tavaal.adversarial.data import (
    BANK_CHUNK,
    BANK_CHUNK_BYTES,
    DEFAULT_MAX_CACHED_BYTES,
    AdversarialData,
    InputBank,
    bank_chunk_rows,
)
from tavaal.adversarial.objectives import (
    discriminator_objective,
    kl_divergence,
    vae_loss_term,
    vae_objective,
)
from tavaal.adversarial.scoring import (
    AdversaryScores,
    adversary_diagnostics,
    roc_auc,
    score_rows,
    wasserstein_to_centroid,
)
from tavaal.adversarial.training import (
    ADVERSARIAL,
    FROZEN_VAE,
    PIXEL_DISCRIMINATOR,
    PLAIN_VAE,
    TrainedAdversary,
    Variant,
    build_adversary,
    train_adversary,
    training_iterations,
    variant_iterations,
)

__all__ = [
    "ADVERSARIAL",
    "BANK_CHUNK",
    "BANK_CHUNK_BYTES",
    "bank_chunk_rows",
    "DEFAULT_MAX_CACHED_BYTES",
    "FROZEN_VAE",
    "PIXEL_DISCRIMINATOR",
    "PLAIN_VAE",
    "Variant",
    "wasserstein_to_centroid",
    "RANK_NORMALIZATIONS",
    "AdversarialData",
    "AdversaryScores",
    "InputBank",
    "TrainedAdversary",
    "adversary_diagnostics",
    "average_ranks",
    "build_adversary",
    "discriminator_objective",
    "kl_divergence",
    "normalise_rank",
    "rank_statistics",
    "roc_auc",
    "score_rows",
    "sigmoid",
    "train_adversary",
    "training_iterations",
    "vae_loss_term",
    "vae_objective",
    "variant_iterations",
]
