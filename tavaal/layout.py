"""Where every result file lives: one place for the workflow's rules and the command line.

    {results}/{experiment}/stage0/seed{seed}/labeled.parquet           initial pool, every method
    {results}/{experiment}/stage0/seed{seed}/{recipe}/model.pt         stage-0 model of a recipe
    {results}/{experiment}/stage0/seed{seed}/{recipe}/metrics.json
    {results}/{experiment}/{method}/seed{seed}/stage{k}/labeled.parquet  k >= 1
    {results}/{experiment}/{method}/seed{seed}/stage{k}/model.pt, metrics.json   k >= 1
    {results}/{experiment}/{method}/seed{seed}/stage{k}/scores.parquet   the query of stage k

Stage 0 is shared: the initial pool depends only on (experiment, seed), and methods with the
same training recipe (`tavaal.training`) train the same stage-0 model, so it is trained once.
The patterns are `str.format` templates that Snakemake also reads as wildcard patterns.
"""

from __future__ import annotations

from pathlib import Path

from tavaal.pool import ALL_METHODS
from tavaal.strategies import strategy_class

INITIAL_POOL = "{results}/{experiment}/stage0/seed{seed}/labeled.parquet"
INITIAL_MODEL = "{results}/{experiment}/stage0/seed{seed}/{recipe}/{name}"
STAGE_FILE = "{results}/{experiment}/{method}/seed{seed}/stage{stage}/{name}"
# Files of stage 0 that live in the shared folder (a stage-0 query's scores do not).
SHARED_STAGE0 = ("labeled.parquet", "model.pt", "metrics.json")
__all__ = ["ALL_METHODS", "INITIAL_MODEL", "INITIAL_POOL", "STAGE_FILE", "run_file"]


def recipe_of(method: str) -> str:
    return strategy_class(method).recipe.name


def run_file(results: str | Path, experiment: str, method: str, seed: int, stage: int, name: str):
    """The file `name` of (experiment, method, seed, stage), wherever it lives."""
    results = str(results).rstrip("/")
    if stage == 0 and name == "labeled.parquet":
        return Path(INITIAL_POOL.format(results=results, experiment=experiment, seed=seed))
    if stage == 0 and name in SHARED_STAGE0:
        return Path(
            INITIAL_MODEL.format(
                results=results,
                experiment=experiment,
                seed=seed,
                recipe=recipe_of(method),
                name=name,
            )
        )
    return Path(
        STAGE_FILE.format(
            results=results, experiment=experiment, method=method, seed=seed, stage=stage, name=name
        )
    )
