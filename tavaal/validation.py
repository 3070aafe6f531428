"""Checks of an experiment against what is registered: datasets, task models, methods, and what
a method needs from the experiment. `tavaal.config` checks values alone; these checks need the
registries, which sit above it, so they live here (the workflow and the CLI call them before any
job runs)."""

from __future__ import annotations

from tavaal.config import ExperimentConfig
from tavaal.data import list_datasets
from tavaal.errors import ConfigError
from tavaal.models import list_task_models
from tavaal.strategies import list_strategies, strategy_class


def check_experiment(exp: ExperimentConfig, where: str | None = None) -> None:
    """One ConfigError naming the key when the experiment asks for something unknown or
    inconsistent with its methods."""
    where = where or f"experiments.{exp.name}"
    _check_choice(f"{where}.dataset", "dataset", exp.dataset, list_datasets())
    _check_choice(f"{where}.model", "task model", exp.model, list_task_models())
    for method in exp.methods:
        _check_choice(f"{where}.methods", "method", method, list_strategies())
    sampling_dropout = [m for m in exp.methods if strategy_class(m).needs_dropout]
    if sampling_dropout and exp.train.dropout == 0:
        raise ConfigError(
            f"{where}.train.dropout: {', '.join(sampling_dropout)} sample the task learner's "
            "dropout (MC dropout) and need train.dropout > 0; it applies to every method alike"
        )


def _check_choice(where: str, what: str, value: str, known: list[str]) -> None:
    if value not in known:
        raise ConfigError(f"{where}: unknown {what} {value!r}; known: {', '.join(known)}")
