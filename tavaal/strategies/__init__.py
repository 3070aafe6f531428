"""Query strategies behind one interface and a name registry."""

from __future__ import annotations

from tavaal.errors import ConfigError
from tavaal.strategies.base import QueryContext, QueryResult, Strategy, score_table, top_k

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
    var_ratio,
)

__all__ = [
    "QueryContext",
    "QueryResult",
    "Strategy",
    "get_strategy",
    "list_strategies",
    "register_strategy",
    "score_table",
    "strategy_class",
    "top_k",
]
