"""Value tests of the baselines newer than the papers (issue 26): margin, least confidence,
BADGE, on hand-built models whose numbers are worked out here. Their selection invariants
(budget distinct candidates, determinism) run in tests/test_strategies.py's property tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tavaal.config import ExperimentConfig, QueryConfig
from tavaal.data import DatasetInfo, PreparedDataset
from tavaal.models import TaskOutput
from tavaal.strategies import QueryContext, get_strategy
from tavaal.training import TrainedModels
from tavaal.uncertainty import least_confidence, margin

EXPERIMENT = ExperimentConfig(
    name="toy",
    dataset="toy",
    model="mlp",
    initial_size=1,
    budget=2,
    subset_size=0,
    query=QueryConfig(inference_batch_size=2),
)


class LogitsAreInputs(nn.Module):
    """logits = x, embedding = x: a sample's input row is its logit vector."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return TaskOutput(logits=x.clone(), embedding=x.clone(), features=[x])


def vector_dataset(x_train: np.ndarray) -> PreparedDataset:
    """Unnormalised vector inputs (mean 0, std 1), labels irrelevant here."""
    n, d = x_train.shape
    info = DatasetInfo(
        name="toy",
        kind="vector",
        num_classes=d,
        classes=tuple(f"c{k}" for k in range(d)),
        input_shape=(d,),
        mean=(0.0,) * d,
        std=(1.0,) * d,
        n_train=n,
        n_test=1,
    )
    return PreparedDataset(
        info=info,
        x_train=x_train.astype(np.float32),
        y_train=np.zeros(n, dtype=np.int64),
        x_test=np.zeros((1, d), dtype=np.float32),
        y_test=np.zeros(1, dtype=np.int64),
    )


def context(method, dataset, labeled, candidates, budget, model, seed=0, stage=0):
    labeled = np.asarray(labeled, dtype=np.int64)
    return QueryContext(
        experiment=EXPERIMENT,
        method=method,
        seed=seed,
        stage=stage,
        dataset=dataset,
        labeled=labeled,
        candidates=np.asarray(candidates, dtype=np.int64),
        unlabeled=np.setdiff1d(np.arange(dataset.info.n_train), labeled),
        budget=budget,
        device=torch.device("cpu"),
        models=TrainedModels(models=[model]),
        log=lambda line: None,
    )


# ---------------------------------------------------------------- margin, least confidence

# Softmax outputs of candidates 1..5 (sample 0 is the labeled one); logits = log p.
PROBABILITIES = np.array(
    [
        [0.9, 0.05, 0.05],  # 0: labeled
        [0.5, 0.3, 0.2],  # 1: margin 0.20, confidence 0.50
        [0.4, 0.35, 0.25],  # 2: margin 0.05, confidence 0.40
        [0.7, 0.2, 0.1],  # 3: margin 0.50, confidence 0.70
        [0.1, 0.45, 0.45],  # 4: margin 0.00, confidence 0.45
        [0.33, 0.34, 0.33],  # 5: margin 0.01, confidence 0.34
    ]
)
MARGINS = np.array([0.20, 0.05, 0.50, 0.00, 0.01])
CONFIDENCES = np.array([0.50, 0.40, 0.70, 0.45, 0.34])


def probability_context(method, budget):
    dataset = vector_dataset(np.log(PROBABILITIES))
    return context(method, dataset, [0], np.arange(1, 6), budget, LogitsAreInputs())


def test_margin_and_least_confidence_of_probability_rows():
    np.testing.assert_allclose(margin(PROBABILITIES[1:]), MARGINS, atol=1e-12)
    np.testing.assert_allclose(least_confidence(PROBABILITIES[1:]), 1 - CONFIDENCES, atol=1e-12)
    # Per row over the last axis, any leading axes (the pixels of segmentation's score rows).
    block = PROBABILITIES[1:].reshape(5, 1, 3)
    np.testing.assert_allclose(margin(block)[:, 0], MARGINS, atol=1e-12)
    # One class: always sure.
    np.testing.assert_array_equal(margin(np.ones((2, 1))), [1.0, 1.0])


@pytest.mark.parametrize(
    ("budget", "picks"), [(1, [4]), (2, [4, 5]), (3, [4, 5, 2]), (5, [4, 5, 2, 1, 3])]
)
def test_margin_picks_the_smallest_gaps_first(budget, picks):
    result = get_strategy("margin").query(probability_context("margin", budget))
    np.testing.assert_array_equal(result.chosen, picks)
    table = result.scores.set_index("index")
    np.testing.assert_allclose(table.loc[np.arange(1, 6), "margin"], MARGINS, atol=1e-6)
    np.testing.assert_allclose(table.loc[np.arange(1, 6), "score"], 1 - MARGINS, atol=1e-6)


@pytest.mark.parametrize(
    ("budget", "picks"), [(1, [5]), (2, [5, 2]), (3, [5, 2, 4]), (5, [5, 2, 4, 1, 3])]
)
def test_least_confidence_picks_the_lowest_top_probability_first(budget, picks):
    result = get_strategy("least_confidence").query(probability_context("least_confidence", budget))
    np.testing.assert_array_equal(result.chosen, picks)
    table = result.scores.set_index("index")
    np.testing.assert_allclose(table.loc[np.arange(1, 6), "confidence"], CONFIDENCES, atol=1e-6)
    np.testing.assert_allclose(table.loc[np.arange(1, 6), "score"], 1 - CONFIDENCES, atol=1e-6)


def test_margin_disagrees_with_entropy_and_least_confidence_here():
    """The three uncertainty measures are different orders: sample 4 is torn between two
    classes (margin 0) but sure of excluding the third, so entropy and least confidence rank it
    below the flat sample 5."""
    picks = {
        method: get_strategy(method).query(probability_context(method, 2)).chosen.tolist()
        for method in ("margin", "least_confidence", "entropy")
    }
    assert picks == {"margin": [4, 5], "least_confidence": [5, 2], "entropy": [5, 2]}
