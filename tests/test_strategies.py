"""Query strategies on small synthetic contexts: contract properties for every strategy in
STRATEGIES, and value tests of the baselines on hand-built models."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tavaal.config import ExperimentConfig, QueryConfig, RankerConfig, TrainConfig, VAEConfig
from tavaal.data import DatasetInfo, PreparedDataset
from tavaal.errors import CheckpointError
from tavaal.inference import forward_pool, mc_dropout_probabilities
from tavaal.models import TaskOutput, build_ranker, build_task_model
from tavaal.seeding import derive_seed
from tavaal.strategies import QueryContext, get_strategy, list_strategies, strategy_class
from tavaal.training import TrainedModels
from tavaal.uncertainty import PassScoreStream, bald, entropy, softmax, variation_ratio

# The baselines of this file's value tests.
BASELINES = [
    "random",
    "entropy",
    "margin",
    "least_confidence",
    "bald",
    "var_ratio",
    "dbal",
    "ensemble_varr",
    "coreset",
    "badge",
    "typiclust",
    "probcover",
    "lloss",
    "lloss_v2",
]
# Every strategy the contract tests run on; extend with further registered names.
STRATEGIES = [
    *BASELINES,
    "vaal",
    "tavaal",
    "vaal_no_vae",
    "vaal_frozen_vae",
    "vae_wasserstein",
    "vaal_lloss",
]
MODEL_STRATEGIES = [name for name in STRATEGIES if strategy_class(name).uses_task_model]
# Columns each baseline adds to the score table.
METHOD_COLUMNS = {
    "random": set(),
    "entropy": {"entropy"},
    "margin": {"margin"},
    "least_confidence": {"confidence"},
    "bald": {"bald", "entropy"},
    "var_ratio": {"var_ratio", "entropy"},
    "dbal": {"entropy"},
    "ensemble_varr": {"var_ratio", "entropy"},
    "coreset": {"min_distance"},
    "badge": {"gradient_norm"},
    "typiclust": {"typicality", "cluster"},
    "probcover": {"coverage_gain"},
    "lloss": {"predicted_loss"},
    "lloss_v2": {"predicted_loss"},
}
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tiny settings everywhere (including VAE/D, for strategies that train one inside the query).
EXPERIMENT = ExperimentConfig(
    name="toy",
    dataset="moons",
    model="mlp",
    initial_size=10,
    budget=5,
    subset_size=0,
    train=TrainConfig(dropout=0.3),
    ranker=RankerConfig(hidden=8),
    vae=VAEConfig(latent_dim=4, hidden=16, disc_hidden=16, batch_size=16, epochs=1, iterations=4),
    query=QueryConfig(mc_samples=4, ensemble_size=3, inference_batch_size=16),
)


def make_dataset(
    n_train: int, num_classes: int, data_seed: int, n_test: int = 10
) -> PreparedDataset:
    """A 2-D vector dataset with standard-normal features (mean 0, std 1: no renormalisation)."""
    rng = np.random.default_rng(data_seed)
    x_train = rng.normal(size=(n_train, 2)).astype(np.float32)
    x_test = rng.normal(size=(n_test, 2)).astype(np.float32)
    info = DatasetInfo(
        name="toy",
        kind="vector",
        num_classes=num_classes,
        classes=tuple(f"c{k}" for k in range(num_classes)),
        input_shape=(2,),
        mean=(0.0, 0.0),
        std=(1.0, 1.0),
        n_train=n_train,
        n_test=n_test,
    )
    return PreparedDataset(
        info=info,
        x_train=x_train,
        y_train=rng.integers(0, num_classes, n_train).astype(np.int64),
        x_test=x_test,
        y_test=rng.integers(0, num_classes, n_test).astype(np.int64),
    )


def make_models(method: str, num_classes: int, model_seed: int) -> TrainedModels | None:
    """Randomly initialised MLP task learner(s) (+ ranker), shaped as the method trains them."""
    cls = strategy_class(method)
    if not cls.uses_task_model:
        return None
    torch.manual_seed(model_seed)
    dropout = EXPERIMENT.train.dropout
    members = EXPERIMENT.query.ensemble_size if cls.recipe.ensemble else 1
    models = [build_task_model("mlp", (2,), num_classes, dropout).eval() for _ in range(members)]
    ranker = build_ranker(models[0], (2,), hidden=8).eval() if cls.recipe.ranker_loss else None
    return TrainedModels(models=models, ranker=ranker)


def make_context(
    method: str,
    dataset: PreparedDataset,
    labeled: np.ndarray,
    candidates: np.ndarray,
    budget: int,
    seed: int = 0,
    stage: int = 0,
    models: TrainedModels | None = None,
    log=None,
) -> QueryContext:
    labeled = np.sort(np.asarray(labeled, dtype=np.int64))
    unlabeled = np.setdiff1d(np.arange(dataset.info.n_train), labeled).astype(np.int64)
    return QueryContext(
        experiment=EXPERIMENT,
        method=method,
        seed=seed,
        stage=stage,
        dataset=dataset,
        labeled=labeled,
        candidates=np.sort(np.asarray(candidates, dtype=np.int64)),
        unlabeled=unlabeled,
        budget=budget,
        device=torch.device("cpu"),
        models=models,
        log=log if log is not None else (lambda line: None),
    )


@st.composite
def contexts(draw, method: str, min_labeled: int = 1):
    """A random pool split: labeled, unlabeled, a candidate subset of it and a budget."""
    n_train = draw(st.integers(40, 120))
    num_classes = draw(st.integers(2, 4))
    dataset = make_dataset(n_train, num_classes, draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    order = rng.permutation(n_train)
    n_labeled = draw(st.integers(min_labeled, n_train - 1))
    unlabeled = np.sort(order[n_labeled:])
    n_candidates = draw(st.integers(1, len(unlabeled)))
    candidates = np.sort(rng.choice(unlabeled, size=n_candidates, replace=False))
    return make_context(
        method,
        dataset,
        labeled=order[:n_labeled],
        candidates=candidates,
        budget=draw(st.integers(1, n_candidates)),
        seed=draw(st.integers(0, 1000)),
        stage=draw(st.integers(0, 5)),
        models=make_models(method, num_classes, draw(st.integers(0, 1000))),
    )


def check_result(ctx: QueryContext, result) -> None:
    chosen = np.asarray(result.chosen)
    assert chosen.dtype == np.int64
    assert len(chosen) == ctx.budget
    assert len(np.unique(chosen)) == ctx.budget
    assert np.isin(chosen, ctx.candidates).all()
    assert np.isin(chosen, ctx.unlabeled).all()
    assert not np.isin(chosen, ctx.labeled).any()
    assert ((chosen >= 0) & (chosen < ctx.dataset.info.n_train)).all()
    table = result.scores
    assert len(table) == len(ctx.candidates)
    np.testing.assert_array_equal(np.sort(table["index"].to_numpy()), ctx.candidates)
    assert table["index"].dtype == np.int64 and table["score"].dtype == np.float64
    assert table["chosen"].dtype == bool
    assert set(table.loc[table["chosen"], "index"]) == set(chosen.tolist())
    assert not table["score"].isna().any()
    # Higher score = picked first: every chosen candidate scores at least every other one.
    if table["chosen"].all():
        return
    assert table.loc[table["chosen"], "score"].min() >= table.loc[~table["chosen"], "score"].max()


# ---------------------------------------------------------------- contract, every strategy


def test_baselines_are_registered():
    assert set(STRATEGIES) <= set(list_strategies())
    flags = {name: strategy_class(name) for name in BASELINES}
    assert not flags["random"].uses_task_model
    assert all(flags[name].needs_dropout for name in ("bald", "var_ratio", "dbal"))
    recipes = {name: cls.recipe.name for name, cls in flags.items()}
    assert recipes["ensemble_varr"] == "ensemble"
    assert recipes["lloss"] == "margin_ranker" and recipes["lloss_v2"] == "ranking_ranker"
    plain = ("random", "entropy", "margin", "least_confidence", "coreset", "badge", "bald")
    assert all(recipes[name] == "plain" for name in plain)


@pytest.mark.parametrize("method", STRATEGIES)
@FAST
@given(data=st.data())
def test_query_contract_and_determinism(method, data):
    ctx = data.draw(contexts(method))
    first = get_strategy(method).query(ctx)
    check_result(ctx, first)
    if method in METHOD_COLUMNS:
        assert METHOD_COLUMNS[method] <= set(first.scores.columns)
    # Same context again: the same picks, in the same order, and the same table.
    second = get_strategy(method).query(ctx)
    np.testing.assert_array_equal(first.chosen, second.chosen)
    pd.testing.assert_frame_equal(first.scores, second.scores)


@pytest.mark.parametrize("method", MODEL_STRATEGIES)
def test_model_strategies_need_the_checkpoint(method):
    dataset = make_dataset(40, 2, 0)
    ctx = make_context(method, dataset, np.arange(10), np.arange(10, 40), 3, models=None)
    with pytest.raises(CheckpointError, match=method):
        get_strategy(method).query(ctx)


@pytest.mark.parametrize("method", ["lloss", "lloss_v2"])
def test_loss_prediction_needs_the_ranker(method):
    dataset = make_dataset(40, 2, 0)
    models = make_models(method, 2, 0)
    models.ranker = None
    ctx = make_context(method, dataset, np.arange(10), np.arange(10, 40), 3, models=models)
    with pytest.raises(CheckpointError, match="ranker"):
        get_strategy(method).query(ctx)


@pytest.mark.parametrize("method", STRATEGIES)
def test_logs_progress_lines(method):
    lines = []
    dataset = make_dataset(60, 3, 1)
    ctx = make_context(
        method,
        dataset,
        np.arange(0, 60, 3),
        np.arange(1, 60, 3),
        4,
        models=make_models(method, 3, 1),
        log=lines.append,
    )
    get_strategy(method).query(ctx)
    assert any(line.startswith(f"{method}:") for line in lines)
    if method in BASELINES:
        summary = f"{method}: scored 20 candidates, picked 4 (seed 0, stage 0) in "
        assert sum(line.startswith(summary) and line.endswith(" s") for line in lines) == 1


@pytest.mark.parametrize("method", STRATEGIES)
def test_whole_candidate_set_as_budget(method):
    dataset = make_dataset(50, 2, 2)
    ctx = make_context(
        method, dataset, np.arange(25), np.arange(25, 50), 25, models=make_models(method, 2, 2)
    )
    result = get_strategy(method).query(ctx)
    check_result(ctx, result)
    assert result.scores["chosen"].all()


@pytest.mark.parametrize("method", BASELINES)
def test_empty_labeled_set(method):
    dataset = make_dataset(40, 2, 3)
    ctx = make_context(
        method, dataset, np.arange(0), np.arange(0, 40, 2), 5, models=make_models(method, 2, 3)
    )
    check_result(ctx, get_strategy(method).query(ctx))


# ---------------------------------------------------------------- random


def test_random_differs_across_seeds_and_stages():
    dataset = make_dataset(100, 2, 4)
    picks = set()
    for seed in range(5):
        for stage in range(2):
            ctx = make_context(
                "random", dataset, np.arange(10), np.arange(10, 100), 10, seed, stage
            )
            picks.add(tuple(get_strategy("random").query(ctx).chosen))
    assert len(picks) == 10


def test_random_is_uniform_over_the_candidates():
    dataset = make_dataset(40, 2, 5)
    candidates = np.arange(20, 40)
    counts = np.zeros(40, dtype=int)
    for seed in range(400):
        ctx = make_context("random", dataset, np.arange(20), candidates, 5, seed=seed)
        counts[get_strategy("random").query(ctx).chosen] += 1
    # 400 * 5 / 20 = 100 expected per candidate (binomial sd ~ 8.7).
    assert counts[:20].sum() == 0
    assert counts[candidates].min() > 65 and counts[candidates].max() < 135


# ---------------------------------------------------------------- hand-built models


class SignModel(nn.Module):
    """logits = scale * (x0 - threshold, threshold - x0); embedding = x; taps = [x]."""

    def __init__(self, scale: float = 3.0, threshold: float = 0.0) -> None:
        super().__init__()
        self.scale = scale
        self.threshold = threshold
        self.unused = nn.Parameter(torch.zeros(1))  # gives the module a device/dtype
        self.dropout = nn.Dropout(0.0)

    def forward(self, x):
        z = self.scale * (x[:, 0] - self.threshold)
        logits = self.dropout(torch.stack([z, -z], dim=1))
        return TaskOutput(logits=logits, embedding=x.clone(), features=[x])


class SecondFeatureRanker(nn.Module):
    """Predicted loss = the second input feature."""

    def forward(self, features):
        return features[0][:, 1]


def hand_context(method, models, n_train=80, data_seed=6, budget=7):
    dataset = make_dataset(n_train, 2, data_seed)
    labeled = np.arange(0, n_train, 4)
    candidates = np.setdiff1d(np.arange(n_train), labeled)
    return make_context(
        method, dataset, labeled, candidates, budget, seed=3, stage=1, models=models
    )


def test_entropy_picks_the_most_uncertain_candidates():
    ctx = hand_context("entropy", TrainedModels(models=[SignModel()]))
    result = get_strategy("entropy").query(ctx)
    # Entropy of softmax(3 x0, -3 x0) decreases with |x0|.
    x0 = ctx.dataset.x_train[ctx.candidates, 0]
    expected = ctx.candidates[np.argsort(np.abs(x0), kind="stable")[: ctx.budget]]
    np.testing.assert_array_equal(result.chosen, expected)
    z = 3.0 * x0.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-2.0 * z))
    np.testing.assert_allclose(
        result.scores["entropy"], -(p * np.log(p) + (1 - p) * np.log(1 - p)), rtol=1e-5
    )


@pytest.mark.parametrize("method", ["lloss", "lloss_v2"])
def test_loss_prediction_picks_the_highest_predicted_loss(method):
    models = TrainedModels(models=[SignModel()], ranker=SecondFeatureRanker())
    ctx = hand_context(method, models)
    result = get_strategy(method).query(ctx)
    x1 = ctx.dataset.x_train[ctx.candidates, 1]
    np.testing.assert_array_equal(result.chosen, ctx.candidates[np.argsort(-x1)[: ctx.budget]])
    np.testing.assert_allclose(result.scores["predicted_loss"], x1, rtol=1e-6)


def test_loss_prediction_with_a_built_ranker_matches_a_direct_forward():
    models = make_models("lloss", 3, 7)
    ctx = hand_context("lloss", models)
    result = get_strategy("lloss").query(ctx)
    with torch.no_grad():
        x = torch.from_numpy(ctx.dataset.x_train[ctx.candidates])
        direct = models.ranker(models.models[0](x).features).numpy()
    np.testing.assert_allclose(result.scores["predicted_loss"], direct, rtol=1e-5, atol=1e-6)
    order = np.lexsort((ctx.candidates, -direct.astype(np.float64)))
    assert set(result.chosen) == set(ctx.candidates[order[: ctx.budget]])


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(axis=2))


def test_coreset_first_pick_is_farthest_from_the_labeled_set():
    ctx = hand_context("coreset", TrainedModels(models=[SignModel()]), budget=6)
    result = get_strategy("coreset").query(ctx)
    x = ctx.dataset.x_train
    to_labeled = _distances(x[ctx.candidates], x[ctx.labeled]).min(axis=1)
    np.testing.assert_allclose(result.scores["min_distance"], to_labeled, rtol=1e-4, atol=1e-5)
    assert result.chosen[0] == ctx.candidates[np.argmax(to_labeled)]
    # The whole order is k-center greedy on the embeddings (= inputs for SignModel).
    centres = list(x[ctx.labeled])
    for pick in result.chosen:
        d = _distances(x[ctx.candidates], np.asarray(centres)).min(axis=1)
        assert pick == ctx.candidates[np.argmax(d)]
        centres.append(x[pick])
    # Scores: budget, ..., 1 for the picks in greedy order; below 1 for the rest.
    table = result.scores.set_index("index")
    np.testing.assert_array_equal(table.loc[result.chosen, "score"], np.arange(6, 0, -1))
    assert (table.loc[~table["chosen"], "score"] < 1).all()


@FAST
@given(data=st.data())
def test_coreset_on_mlp_embeddings_follows_min_distance(data):
    ctx = data.draw(contexts("coreset"))
    result = get_strategy("coreset").query(ctx)
    model = ctx.models.models[0]
    with torch.no_grad():
        emb = model(torch.from_numpy(ctx.dataset.x_train)).embedding.numpy()
    to_labeled = _distances(emb[ctx.candidates], emb[ctx.labeled]).min(axis=1)
    np.testing.assert_allclose(result.scores["min_distance"], to_labeled, rtol=1e-3, atol=1e-4)
    first = np.flatnonzero(ctx.candidates == result.chosen[0])[0]
    assert to_labeled[first] >= to_labeled.max() - 1e-4


def test_coreset_without_labeled_starts_farthest_from_the_mean():
    ctx = hand_context("coreset", TrainedModels(models=[SignModel()]), budget=3)
    ctx.labeled = np.zeros(0, dtype=np.int64)
    result = get_strategy("coreset").query(ctx)
    x = ctx.dataset.x_train[ctx.candidates].astype(np.float64)
    to_mean = np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1))
    assert result.chosen[0] == ctx.candidates[np.argmax(to_mean)]
    assert result.scores["min_distance"].isna().all()


def test_ensemble_varr_picks_where_the_members_disagree():
    # Three members split the line at x0 = -0.5, 0, 0.5: between -0.5 and 0.5 one member
    # disagrees with the other two (ratio 1/3); outside, all agree (ratio 0).
    members = [SignModel(threshold=t) for t in (-0.5, 0.0, 0.5)]
    dataset = make_dataset(120, 2, 8)
    x0 = dataset.x_train[:, 0]
    labeled = np.arange(0, 120, 5)
    candidates = np.setdiff1d(np.arange(120), labeled)
    inside = candidates[np.abs(x0[candidates]) < 0.5]
    ctx = make_context(
        "ensemble_varr",
        dataset,
        labeled,
        candidates,
        len(inside),
        models=TrainedModels(models=members),
    )
    result = get_strategy("ensemble_varr").query(ctx)
    assert set(result.chosen) == set(inside)
    table = result.scores.set_index("index")
    np.testing.assert_allclose(table.loc[inside, "var_ratio"], 1 / 3)
    np.testing.assert_allclose(table.loc[~table["chosen"], "var_ratio"], 0.0)
    # Within the tied ratio, the higher entropy of the mean prediction goes first.
    np.testing.assert_array_equal(
        result.chosen, table.loc[inside].sort_values("entropy", ascending=False).index
    )


@pytest.mark.parametrize("method", ["var_ratio", "ensemble_varr"])
def test_variation_ratio_ties_fall_back_to_entropy(method):
    # No dropout / identical members: every ratio is 0, so the picks are entropy's picks.
    torch.manual_seed(9)
    model = build_task_model("mlp", (2,), 3, dropout=0.0).eval()
    members = [model] * (3 if method == "ensemble_varr" else 1)
    ctx = hand_context(method, TrainedModels(models=members), budget=9)
    result = get_strategy(method).query(ctx)
    np.testing.assert_allclose(result.scores["var_ratio"], 0.0)
    by_entropy = get_strategy("entropy").query(
        hand_context("entropy", TrainedModels(models=[model]), budget=9)
    )
    np.testing.assert_array_equal(result.chosen, by_entropy.chosen)


@pytest.mark.parametrize("method", ["bald", "var_ratio", "dbal"])
def test_mc_dropout_scores_match_the_formulas(method):
    models = make_models(method, 3, 10)
    ctx = hand_context(method, models)
    result = get_strategy(method).query(ctx)
    probs = mc_dropout_probabilities(
        models.models[0],
        ctx.dataset.x_train,
        ctx.candidates,
        ctx.dataset.info,
        "cpu",
        samples=EXPERIMENT.query.mc_samples,
        generator_seed=derive_seed(ctx.seed, ctx.stage, "query/mc_dropout"),
        # The dropout masks follow the batching, so use the strategy's batch size.
        batch_size=EXPERIMENT.query.inference_batch_size,
    ).probabilities.astype(np.float64)
    expected = {
        "bald": bald(probs),
        "var_ratio": variation_ratio(probs),
        # DBAL (VAAL §4): max entropy of the mean MC-dropout prediction, not BALD.
        "dbal": entropy(probs.mean(axis=0)),
    }[method]
    np.testing.assert_allclose(
        result.scores[method if method != "dbal" else "score"], expected, atol=1e-6
    )
    np.testing.assert_allclose(result.scores["entropy"], entropy(probs.mean(axis=0)), atol=1e-6)
    # Dropout is active, so the passes differ somewhere.
    assert probs.std(axis=0).max() > 0
    if method == "bald":
        np.testing.assert_array_equal(
            result.chosen,
            ctx.candidates[np.lexsort((ctx.candidates, -result.scores["bald"]))][: ctx.budget],
        )


def test_bald_is_zero_without_dropout():
    # A model with p = 0: every pass is the same, so there is no disagreement to measure.
    torch.manual_seed(11)
    model = build_task_model("mlp", (2,), 2, dropout=0.0).eval()
    lines = []
    ctx = hand_context("bald", TrainedModels(models=[model]))
    ctx.log = lines.append
    result = get_strategy("bald").query(ctx)
    np.testing.assert_allclose(result.scores["bald"], 0.0, atol=1e-9)
    assert any("no dropout" in line for line in lines)
    with torch.no_grad():
        logits = model(torch.from_numpy(ctx.dataset.x_train[ctx.candidates])).logits.numpy()
    np.testing.assert_allclose(result.scores["entropy"], entropy(softmax(logits)), atol=1e-6)
    assert math.isclose(result.diagnostics["mean_bald"], 0.0, abs_tol=1e-9)


# --- Streaming: scores computed one inference batch at a time ------------------------------


def _probabilities(rng, passes, n, classes, ties):
    logits = rng.normal(size=(passes, n, classes)) * rng.choice([0.1, 3.0, 30.0])
    if ties:
        logits = np.round(logits)  # equal logits: argmax ties and equal votes
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 5, 23])
@pytest.mark.parametrize("chunk", [1, 2, 7, 23, 100])
def test_streamed_pass_scores_equal_the_whole_array_formulas(n, chunk):
    rng = np.random.default_rng([n, chunk])
    for passes, ties in [(1, False), (3, True), (4, False), (10, False), (10, True)]:
        probs = _probabilities(rng, passes, n, int(rng.integers(2, 9)), ties)
        whole = probs.astype(np.float64)
        stream = PassScoreStream(n)
        for start in range(0, n, chunk):
            stream.add(start, min(start + chunk, n), probs[:, start : start + chunk])
        got = stream.result()
        # Bit for bit: the same float64 arithmetic per sample, whatever the chunk size.
        assert got.mean_entropy.tobytes() == entropy(whole.mean(axis=0)).tobytes()
        assert got.bald.tobytes() == bald(probs).tobytes()
        assert got.variation_ratio.tobytes() == variation_ratio(probs).tobytes()
        assert got.classes == probs.shape[2]


def _with_batch_size(ctx: QueryContext, batch_size: int) -> QueryContext:
    ctx.experiment = dataclasses.replace(
        EXPERIMENT, query=dataclasses.replace(EXPERIMENT.query, inference_batch_size=batch_size)
    )
    return ctx


@pytest.mark.parametrize("method", ["bald", "var_ratio", "dbal"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_streamed_mc_scores_equal_the_formulas_on_the_whole_array(method, batch_size):
    # The dropout masks follow the batching, so the reference uses the same batch size; at that
    # batch size the streamed scores are the whole-array formulas bit for bit.
    models = make_models(method, 3, 10)
    ctx = _with_batch_size(hand_context(method, models), batch_size)
    result = get_strategy(method).query(ctx)
    out = mc_dropout_probabilities(
        models.models[0],
        ctx.dataset.x_train,
        ctx.candidates,
        ctx.dataset.info,
        "cpu",
        samples=EXPERIMENT.query.mc_samples,
        generator_seed=derive_seed(ctx.seed, ctx.stage, "query/mc_dropout"),
        batch_size=batch_size,
    )
    probs = out.probabilities.astype(np.float64)
    mean_entropy = entropy(probs.mean(axis=0))
    assert result.scores["entropy"].to_numpy().tobytes() == mean_entropy.tobytes()
    if method == "bald":
        assert result.scores["bald"].to_numpy().tobytes() == bald(probs).tobytes()
    if method == "var_ratio":
        ratio = variation_ratio(probs)
        assert result.scores["var_ratio"].to_numpy().tobytes() == ratio.tobytes()
    np.testing.assert_array_equal(ctx.candidate_logits, out.logits)


@pytest.mark.parametrize(
    "method", ["entropy", "margin", "ensemble_varr", "coreset", "badge", "typiclust"]
)
def test_deterministic_picks_do_not_depend_on_the_inference_batch_size(method):
    # No dropout masks here: the batch size changes at most float32 rounding in the network
    # (matrix products of another shape), not the picks.
    results = []
    for batch_size in [1, 5, 16, 1000]:
        ctx = _with_batch_size(hand_context(method, make_models(method, 3, 12)), batch_size)
        results.append((get_strategy(method).query(ctx), ctx.candidate_logits))
    first, first_logits = results[0]
    for result, logits in results[1:]:
        np.testing.assert_array_equal(result.chosen, first.chosen)
        # Core-set's float32 |a|^2 + |b|^2 - 2ab distances carry that rounding relatively.
        np.testing.assert_allclose(
            result.scores["score"], first.scores["score"], rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(logits, first_logits, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_streamed_entropy_and_ensemble_equal_the_whole_array_formulas(batch_size):
    models = make_models("ensemble_varr", 3, 14)
    ctx = _with_batch_size(hand_context("ensemble_varr", models), batch_size)
    result = get_strategy("ensemble_varr").query(ctx)
    logits = [
        forward_pool(
            m, ctx.dataset.x_train, ctx.candidates, ctx.dataset.info, "cpu", batch_size
        ).logits
        for m in models.models
    ]
    probs = np.stack([softmax(member) for member in logits])
    assert result.scores["var_ratio"].to_numpy().tobytes() == variation_ratio(probs).tobytes()
    assert result.scores["entropy"].to_numpy().tobytes() == entropy(probs.mean(axis=0)).tobytes()
    np.testing.assert_array_equal(ctx.candidate_logits, logits[0])
    ctx = _with_batch_size(hand_context("entropy", TrainedModels(models.models[:1])), batch_size)
    result = get_strategy("entropy").query(ctx)
    expected = entropy(softmax(logits[0]))
    assert result.scores["entropy"].to_numpy().tobytes() == expected.tobytes()
