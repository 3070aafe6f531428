"""The query-strategy interface: one strategy per module, looked up by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tavaal.adversarial import ADVERSARIAL, FROZEN_VAE, PIXEL_DISCRIMINATOR, Variant
from tavaal.seeding import numpy_rng, torch_generator
from tavaal.training import PLAIN, TrainedModels, TrainingRecipe

if TYPE_CHECKING:
    # pandas is imported by score_table, in the query: training jobs look strategies up too.
    import pandas as pd
    import torch

    from tavaal.config import ExperimentConfig
    from tavaal.data import PreparedDataset


@dataclass
class QueryContext:
    """Everything a strategy may look at when it scores the candidates of one query."""

    experiment: ExperimentConfig
    method: str
    seed: int
    stage: int
    dataset: PreparedDataset
    labeled: np.ndarray
    candidates: np.ndarray
    unlabeled: np.ndarray
    budget: int
    device: torch.device
    models: TrainedModels | None = None
    log: Callable[[str], None] = field(default=print)
    # Where a long query (VAE/D training) keeps a resumable state, and how often (iterations).
    resume_path: Path | None = None
    checkpoint_every: int = 0
    # Eval-mode logits of models[0] on the candidates, once a strategy has computed them: the
    # stage runner reuses them for the true loss instead of a second pass. Only a task that
    # keeps (N, K) logits (`Task.keeps_logits`) sets it; segmentation's true loss is a pass of
    # its own (`Task.true_loss`).
    candidate_logits: np.ndarray | None = None

    def remember_logits(self, indices: np.ndarray, logits: np.ndarray) -> None:
        """Keep the candidates' rows of `logits` (one row per entry of `indices`) if all are
        there."""
        indices = np.asarray(indices, dtype=np.int64)
        skip = len(indices) - len(self.candidates)
        if skip >= 0 and (indices[skip:] == self.candidates).all():
            # The last rows are the candidates' in their order (all of them, or after the
            # labeled set, as in core-set): a view of them, not a copy.
            self.candidate_logits = np.asarray(logits)[skip:]
            return
        order = np.argsort(indices, kind="stable")
        where = np.searchsorted(indices[order], self.candidates)
        inside = where < len(indices)
        if inside.all() and (indices[order][where] == self.candidates).all():
            self.candidate_logits = np.asarray(logits)[order[where]]

    def rng(self, role: str) -> np.random.Generator:
        return numpy_rng(self.seed, self.stage, f"query/{role}")

    def torch_generator(self, role: str, device: str | torch.device = "cpu") -> torch.Generator:
        return torch_generator(self.seed, self.stage, f"query/{role}", device)


@dataclass
class QueryResult:
    """`chosen` in selection order; `scores` one row per candidate (higher score = picked first)."""

    chosen: np.ndarray
    scores: pd.DataFrame
    diagnostics: dict[str, float] = field(default_factory=dict)


# Settings every query reads (dotted paths into the experiment): which samples are unlabeled
# and candidates, how many to pick, how inputs are scaled and batched.
COMMON_QUERY_SETTINGS = (
    "dataset",
    "normalization",
    "budget",
    "subset_size",
    "train.validation_size",
    "query.inference_batch_size",
)


class Strategy(ABC):
    name: ClassVar[str]
    # Settings the query reads besides COMMON_QUERY_SETTINGS (e.g. "vae"): with them, a query's
    # Snakemake params and the settings hash of its index files, so that a setting change
    # reruns (and the results guard reports) only the queries that read it. What the task
    # model brings (training settings) reaches a query through its model.pt input.
    query_reads: ClassVar[tuple[str, ...]] = ()
    # The query reads the stage's task checkpoint (so the workflow adds model.pt to its inputs).
    uses_task_model: ClassVar[bool] = False
    # How the task learner this method queries with is trained (`tavaal.training`): a plain
    # classifier, with a margin-loss or ranking-loss ranker, or an ensemble. Only the ranker
    # methods train a ranker (the official TA-VAAL code trains one for every method, which
    # changes the baselines).
    recipe: ClassVar[TrainingRecipe] = PLAIN
    # The query samples the task learner's dropout (MC dropout): train.dropout must be > 0.
    needs_dropout: ClassVar[bool] = False
    # What the query trains besides the task learner (`tavaal.adversarial.Variant`): VAAL's
    # VAE + D game, an ablation of it, or nothing (None). Sizes the query's jobs.
    adversary: ClassVar[Variant | None] = None
    # The tasks (`tavaal.tasks`, DatasetInfo.task) whose datasets the method can select on;
    # the experiment check names `methods` for any other.
    tasks: ClassVar[tuple[str, ...]] = ("classification", "segmentation")
    # The query selects on `embedding.source` (the task learner's features or a user's file):
    # the source, and a file's contents, enter its settings hash, and the file its inputs.
    reads_embedding: ClassVar[bool] = False

    @abstractmethod
    def query(self, ctx: QueryContext) -> QueryResult:
        """Score ctx.candidates and pick exactly ctx.budget of them."""


def trains_discriminator(strategy: type[Strategy]) -> bool:
    """The query trains a discriminator and its scores have disc_logit, disc_output and
    unlabeled_probability (the discriminator figures and the adversarial health table)."""
    return strategy.adversary in (ADVERSARIAL, FROZEN_VAE, PIXEL_DISCRIMINATOR)


def query_settings(exp: ExperimentConfig, strategy: type[Strategy]) -> dict:
    """What one method's queries depend on besides their input files (see `query_reads`), and
    the oracle that labels its picks (nothing for the ideal oracle)."""
    return {
        "method": strategy.name,
        **exp.select(*COMMON_QUERY_SETTINGS, *strategy.query_reads),
        **(exp.embedding_settings() if strategy.reads_embedding else {}),
        **exp.oracle_settings(),
    }


def top_k(candidates: np.ndarray, score: np.ndarray, budget: int) -> np.ndarray:
    """The `budget` highest-scoring candidates; ties broken by the smaller index (deterministic)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    if candidates.shape != score.shape:
        raise ValueError(f"{len(candidates)} candidates but {len(score)} scores")
    if budget > len(candidates):
        raise ValueError(f"budget {budget} exceeds the {len(candidates)} candidates")
    if np.isnan(score).any():
        raise ValueError("scores contain NaN")
    order = np.lexsort((candidates, -score))
    return candidates[order[:budget]]


def score_table(
    candidates: np.ndarray, score: np.ndarray, chosen: np.ndarray, **columns
) -> pd.DataFrame:
    """The per-candidate table every strategy returns."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "index": np.asarray(candidates, dtype=np.int64),
            "score": np.asarray(score, dtype=np.float64),
            "chosen": np.isin(candidates, chosen),
        }
    )
    for name, values in columns.items():
        table[name] = np.asarray(values, dtype=np.float64)
    return table
