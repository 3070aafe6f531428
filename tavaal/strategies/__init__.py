"""Query strategies behind one interface and a name registry."""

from __future__ import annotations

from tavaal.config import ExperimentConfig, settings_hash
from tavaal.errors import ConfigError
from tavaal.strategies.base import (
    QueryContext,
    QueryResult,
    Strategy,
    query_settings,
    score_table,
    top_k,
    trains_discriminator,
)

_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in _REGISTRY:
        raise ValueError(f"strategy {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown method {name!r}; known: {', '.join(list_strategies())}"
        ) from None


def get_strategy(name: str) -> Strategy:
    return strategy_class(name)()


def list_strategies() -> list[str]:
    return sorted(_REGISTRY)


def method_settings(exp: ExperimentConfig, method: str) -> dict:
    """What `method`'s queries depend on besides their input files (`query_settings`)."""
    return query_settings(exp, strategy_class(method))


def method_hash(exp: ExperimentConfig, method: str) -> str:
    """The settings hash of `method`'s index files (stages >= 1) and scores."""
    return settings_hash(method_settings(exp, method))


# Importing the modules registers the strategies.
from tavaal.strategies import (  # noqa: E402, F401
    bald,
    coreset,
    dbal,
    ensemble_varr,
    entropy,
    lloss,
    lloss_v2,
    random_sampling,
    tavaal,
    vaal,
    vaal_frozen_vae,
    vaal_lloss,
    vaal_no_vae,
    vae_wasserstein,
    var_ratio,
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
