"""The registry of query strategies, by the method name a config gives.

A strategy module registers its class with `@register_strategy`; the package
(`tavaal.strategies`) imports every strategy module, so each is known once the package is
imported. This module imports no strategy module: a strategy importing it is no import cycle.
"""

from __future__ import annotations

from tavaal.config import ExperimentConfig, settings_hash
from tavaal.errors import ConfigError
from tavaal.registry import Registry
from tavaal.strategies.base import Strategy, query_settings

STRATEGIES: Registry[type[Strategy]] = Registry("method", ConfigError)


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make strategy `cls` known under its `name`."""
    return STRATEGIES.add(cls.name, cls)


def strategy_class(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)


def get_strategy(name: str) -> Strategy:
    return strategy_class(name)()


def list_strategies(task: str | None = None) -> list[str]:
    """The registered method names; with `task` (a `tavaal.tasks` name), only those that
    select on its datasets (`Strategy.tasks`)."""
    names = STRATEGIES.names()
    if task is None:
        return names
    return [name for name in names if task in STRATEGIES.get(name).tasks]


def method_settings(exp: ExperimentConfig, method: str) -> dict:
    """What `method`'s queries depend on besides their input files (`query_settings`)."""
    return query_settings(exp, strategy_class(method))


def method_hash(exp: ExperimentConfig, method: str) -> str:
    """The settings hash of `method`'s index files (stages >= 1) and scores."""
    return settings_hash(method_settings(exp, method))
