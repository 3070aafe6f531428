"""Query strategies behind one interface and a name registry (`tavaal.strategies.registry`).

Importing this package imports every strategy module, which registers its strategy.
"""

from __future__ import annotations

# Importing the modules registers the strategies.
from tavaal.strategies import (  # noqa: F401
    badge,
    bald,
    coreset,
    dbal,
    ensemble_varr,
    entropy,
    least_confidence,
    lloss,
    lloss_v2,
    margin,
    probcover,
    random_sampling,
    tavaal,
    typiclust,
    vaal,
    vaal_frozen_vae,
    vaal_lloss,
    vaal_no_vae,
    vae_wasserstein,
    var_ratio,
)
from tavaal.strategies.base import (
    QueryContext,
    QueryResult,
    Strategy,
    query_settings,
    score_table,
    top_k,
    trains_discriminator,
)
from tavaal.strategies.registry import (
    get_strategy,
    list_strategies,
    method_hash,
    method_settings,
    register_strategy,
    strategy_class,
)

__all__ = [
    "QueryContext",
    "QueryResult",
    "Strategy",
    "get_strategy",
    "list_strategies",
    "method_hash",
    "method_settings",
    "query_settings",
    "register_strategy",
    "score_table",
    "strategy_class",
    "top_k",
    "trains_discriminator",
]
