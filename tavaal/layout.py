"""Where every result file lives: one place for the workflow's rules and the command line.

    {results}/{experiment}/stage0/seed{seed}/labeled.parquet           initial pool, every method
    {results}/{experiment}/stage0/seed{seed}/{recipe}/model.pt         stage-0 model of a recipe
    {results}/{experiment}/stage0/seed{seed}/{recipe}/metrics.json
    {results}/{experiment}/{method}/seed{seed}/stage{k}/labeled.parquet  k >= 1
    {results}/{experiment}/{method}/seed{seed}/stage{k}/model.pt, metrics.json   k >= 1
    {results}/{experiment}/{method}/seed{seed}/stage{k}/scores.parquet   the query of stage k

Practitioner mode (a human oracle, `tavaal.practitioner`): a request to label sits in the folder
of the stage it labels (the initial pool's in stage0/seed{seed}/), and the person's answer under
the oracle's labels_dir, mirroring it, never under results/:

    {labels}/{experiment}/stage0/seed{seed}/labels.csv                 the initial pool
    {labels}/{experiment}/{method}/seed{seed}/stage{k}/labels.csv      k >= 1
    {results}/{experiment}/export/{method}/seed{seed}/stage{k}/        labeled.csv, model.pt

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
INITIAL_FOLDER = "{results}/{experiment}/stage0/seed{seed}"
STAGE_FOLDER = "{results}/{experiment}/{method}/seed{seed}/stage{stage}"
EXPORT_FOLDER = "{results}/{experiment}/export/{method}/seed{seed}/stage{stage}"
LABELS_NAME = "labels.csv"
__all__ = [
    "ALL_METHODS",
    "EXPORT_FOLDER",
    "INITIAL_MODEL",
    "INITIAL_POOL",
    "STAGE_FILE",
    "labels_file",
    "request_folder",
    "run_file",
]


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


def request_folder(results: str | Path, experiment: str, method: str, seed: int, stage: int):
    """Where the request to label stage `stage`'s new samples is written (stage 0: shared)."""
    results = str(results).rstrip("/")
    if stage == 0:
        return Path(INITIAL_FOLDER.format(results=results, experiment=experiment, seed=seed))
    return Path(
        STAGE_FOLDER.format(
            results=results, experiment=experiment, method=method, seed=seed, stage=stage
        )
    )


def labels_file(labels_dir: str | Path, experiment: str, method: str, seed: int, stage: int):
    """The labels file a person fills for that request (mirrors `request_folder`)."""
    return request_folder(labels_dir, experiment, method, seed, stage) / LABELS_NAME
