"""Value tests of the baselines newer than the papers (issue 26): margin, least confidence,
BADGE, on hand-built models whose numbers are worked out here. Their selection invariants
(budget distinct candidates, determinism) run in tests/test_strategies.py's property tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from tavaal.config import EmbeddingConfig, ExperimentConfig, QueryConfig
from tavaal.data import DatasetInfo, PreparedDataset, known_split_sizes
from tavaal.diversity import (
    gradient_embedding_residual,
    kmeans_labels,
    kmeans_pp_seeding,
    probcover_select,
    purity_radius,
    typicality,
    typiclust_select,
)
from tavaal.errors import ConfigError, IndexFileError
from tavaal.models import TaskOutput, build_task_model
from tavaal.seeding import numpy_rng
from tavaal.strategies import (
    QueryContext,
    get_strategy,
    list_strategies,
    method_hash,
    method_settings,
)
from tavaal.training import TrainedModels
from tavaal.uncertainty import least_confidence, margin
from tavaal.validation import check_experiment

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


# ---------------------------------------------------------------- BADGE


def explicit_gradient_embeddings(residual: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The (N, K·D) embeddings BADGE's formula names, class-major as the weight's rows."""
    return (residual[:, :, None] * features[:, None, :].astype(np.float64)).reshape(
        len(residual), -1
    )


def test_gradient_embedding_is_the_last_layer_gradient_of_the_cross_entropy():
    """(softmax − onehot(ŷ)) ⊗ h equals autograd's d CE(logits, ŷ) / d W of the classifier's
    weight W (K, D), sample by sample, on a small MLP."""
    torch.manual_seed(0)
    model = build_task_model("mlp", (2,), 4, dropout=0.3).double().eval()
    x = torch.randn(6, 2, dtype=torch.float64)
    out = model(x)
    residual = gradient_embedding_residual(out.logits.detach().numpy())
    embeddings = explicit_gradient_embeddings(residual, out.embedding.detach().numpy())
    for i in range(len(x)):
        model.zero_grad()
        logits = model(x[i : i + 1]).logits
        loss = nn.functional.cross_entropy(logits, logits.argmax(dim=1))
        loss.backward()
        expected = model.classifier.weight.grad.flatten().numpy()
        np.testing.assert_allclose(embeddings[i], expected, rtol=1e-10, atol=1e-12)
    # The residual's predicted-class entry is p − 1 <= 0, the others p >= 0; rows sum to 0.
    np.testing.assert_allclose(residual.sum(axis=1), 0.0, atol=1e-12)


def test_factorised_distances_equal_the_explicit_ones():
    rng = np.random.default_rng(1)
    residual = gradient_embedding_residual(rng.normal(size=(30, 5)))
    features = rng.normal(size=(30, 7)).astype(np.float32)
    result = kmeans_pp_seeding(
        torch.from_numpy(residual), torch.from_numpy(features), 6, np.random.default_rng(2), 4
    )
    g = explicit_gradient_embeddings(residual, features)
    np.testing.assert_allclose(result.gradient_norm, np.linalg.norm(g, axis=1), rtol=1e-10)
    to_picks = np.linalg.norm(g[:, None, :] - g[None, result.order, :], axis=2).min(axis=1)
    np.testing.assert_allclose(result.final_distance, to_picks, rtol=1e-6, atol=1e-7)
    assert result.order[0] == np.argmax(np.linalg.norm(g, axis=1))
    # Chunks of 1 row or all rows: the same picks and distances.
    whole = kmeans_pp_seeding(
        torch.from_numpy(residual), torch.from_numpy(features), 6, np.random.default_rng(2), 100
    )
    np.testing.assert_array_equal(whole.order, result.order)
    np.testing.assert_allclose(whole.final_distance, result.final_distance, rtol=1e-12)


# Embeddings g = 0, 1, 3, 10 on a line (residual 1, one feature). The first pick is the
# largest |g| (position 3); then D² = 100, 81, 49, 0 (cumulative 100, 181, 230), and the
# generator's first u ~ U(0, 1) picks the position whose interval holds 230 u:
#   seed 0: u = 0.637 -> 146.5 -> position 1; D² left 1, 4 (cumulative 1, 5), u = 0.270 ->
#           1.35 -> position 2; position 0 last.
#   seed 3: u = 0.0856 -> 19.7 -> position 0; D² left 1, 9 (cumulative 1, 10), u = 0.237 ->
#           2.37 -> position 2; position 1 last.
#   seed 4: u = 0.943 -> 216.9 -> position 2; D² left 9, 4 (cumulative 9, 13), u = 0.511 ->
#           6.65 -> position 0; position 1 last.
LINE = np.array([[0.0], [1.0], [3.0], [10.0]])


@pytest.mark.parametrize(
    ("seed", "order"), [(0, [3, 1, 2, 0]), (3, [3, 0, 2, 1]), (4, [3, 2, 0, 1])]
)
def test_kmeans_pp_picks_by_d2_sampling_with_a_fixed_seed(seed, order):
    assert [float(u) for u in np.random.default_rng(seed).random(2)] == pytest.approx(
        {0: [0.637, 0.270], 3: [0.0856, 0.237], 4: [0.943, 0.511]}[seed], abs=1e-3
    )
    residual = torch.ones(4, 1, dtype=torch.float64)
    result = kmeans_pp_seeding(residual, torch.from_numpy(LINE), 4, np.random.default_rng(seed))
    np.testing.assert_array_equal(result.order, order)
    np.testing.assert_array_equal(result.final_distance, 0.0)
    three = kmeans_pp_seeding(residual, torch.from_numpy(LINE), 3, np.random.default_rng(seed))
    np.testing.assert_array_equal(three.order, order[:3])
    np.testing.assert_array_equal(three.final_distance[order[3]], 1.0)


def test_d2_sampling_draws_the_second_pick_in_proportion_to_squared_distance():
    residual = torch.ones(4, 1, dtype=torch.float64)
    counts = np.zeros(4)
    draws = 2000
    for seed in range(draws):
        pick = kmeans_pp_seeding(residual, torch.from_numpy(LINE), 2, np.random.default_rng(seed))
        counts[pick.order[1]] += 1
    # 100 : 81 : 49 of 230 (binomial sd about 0.011 at 2000 draws).
    np.testing.assert_allclose(counts / draws, [100 / 230, 81 / 230, 49 / 230, 0.0], atol=0.04)


def test_kmeans_pp_on_duplicates_picks_distinct_points():
    """Identical embeddings leave every D² at 0 after the first pick: the rest are drawn
    uniformly, still each once."""
    residual = torch.ones(5, 1, dtype=torch.float64)
    features = torch.ones(5, 3)
    result = kmeans_pp_seeding(residual, features, 5, np.random.default_rng(0))
    assert sorted(result.order.tolist()) == [0, 1, 2, 3, 4] and result.order[0] == 0
    assert not kmeans_pp_seeding(residual, features, 0, np.random.default_rng(0)).order.size


def badge_context(seed=0, stage=0, budget=4):
    rng = np.random.default_rng(5)
    dataset = vector_dataset(rng.normal(size=(40, 2)))
    torch.manual_seed(3)
    model = build_task_model("mlp", (2,), 3, dropout=0.0).eval()
    return context("badge", dataset, np.arange(10), np.arange(10, 40), budget, model, seed, stage)


def test_badge_query_follows_the_seeding_of_the_models_gradient_embeddings():
    ctx = badge_context(seed=7, stage=2)
    result = get_strategy("badge").query(ctx)
    model = ctx.models.models[0]
    with torch.no_grad():
        out = model(torch.from_numpy(ctx.dataset.x_train[ctx.candidates]))
    residual = gradient_embedding_residual(out.logits.numpy())
    expected = kmeans_pp_seeding(
        torch.from_numpy(residual),
        out.embedding,
        4,
        numpy_rng(7, 2, "query/badge"),
    )
    np.testing.assert_array_equal(result.chosen, ctx.candidates[expected.order])
    table = result.scores.set_index("index")
    np.testing.assert_allclose(
        table.loc[ctx.candidates, "gradient_norm"], expected.gradient_norm, rtol=1e-5
    )
    # Picks score 4, 3, 2, 1 in pick order; the rest d / (1 + d) < 1.
    np.testing.assert_array_equal(table.loc[result.chosen, "score"], [4.0, 3.0, 2.0, 1.0])
    rest = table.loc[~table["chosen"]]
    assert (rest["score"] < 1).all() and (rest["score"] > 0).all()
    # The first pick has the largest gradient norm.
    assert result.chosen[0] == table["gradient_norm"].idxmax()


def test_badge_picks_follow_the_seed_and_stage():
    picks = {
        (seed, stage): tuple(get_strategy("badge").query(badge_context(seed, stage)).chosen)
        for seed in range(3)
        for stage in range(2)
    }
    assert picks[(0, 0)] == tuple(get_strategy("badge").query(badge_context(0, 0)).chosen)
    # Same first pick (the largest norm), different D² draws after it.
    assert len({p[0] for p in picks.values()}) == 1
    assert len(set(picks.values())) > 1


def test_badge_on_a_segmentation_dataset_is_a_config_error_naming_methods():
    settings = {
        "dataset": "seg_shapes",
        "model": "drn_d_22",
        "methods": ["random", "badge"],
        "initial_size": 8,
        "budget": 4,
    }
    with pytest.raises(ConfigError, match=r"experiments\.seg\.methods: 'badge' selects on "):
        check_experiment(ExperimentConfig.from_dict("seg", settings))
    check_experiment(ExperimentConfig.from_dict("seg", {**settings, "methods": ["random"]}))
    assert "badge" not in list_strategies("segmentation")
    assert {"margin", "least_confidence", "entropy"} <= set(list_strategies("segmentation"))
    # The query itself refuses too (a library caller without the experiment check).
    ctx = badge_context()
    info = dataclasses.replace(ctx.dataset.info, task="segmentation")
    ctx = dataclasses.replace(ctx, dataset=dataclasses.replace(ctx.dataset, info=info))
    with pytest.raises(ConfigError, match="classification datasets only"):
        get_strategy("badge").query(ctx)


# ---------------------------------------------------------------- TypiClust


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours():
    # Points 0, 1, 2, 10 and 2 neighbours: mean distances 1.5, 1, 1.5, 8.5.
    line = np.array([[0.0], [1.0], [2.0], [10.0]])
    expected = 1.0 / (np.array([1.5, 1.0, 1.5, 8.5]) + 1e-5)
    np.testing.assert_allclose(typicality(line, 2), expected, rtol=1e-12)
    # One neighbour: 1, 1, 1, 8.
    np.testing.assert_allclose(typicality(line, 1), 1.0 / (np.array([1, 1, 1, 8]) + 1e-5))
    np.testing.assert_array_equal(typicality(line[:1], 0), [1.0])
    # Row blocks of any size give the same values.
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(50, 3))
    np.testing.assert_allclose(
        typicality(cloud, 20, block_bytes=1), typicality(cloud, 20), rtol=1e-12
    )
    distance = np.linalg.norm(cloud[:, None] - cloud[None], axis=2)
    nearest = np.sort(distance, axis=1)[:, 1:21]  # column 0 is the point itself
    np.testing.assert_allclose(typicality(cloud, 20), 1 / (nearest.mean(axis=1) + 1e-5))


# Four well separated blobs in 2-D: A (7 points), B (8, one of them labeled), C (6) and D (3).
BLOB_CENTRES = {"A": (0.0, 0.0), "B": (100.0, 0.0), "C": (0.0, 100.0), "D": (100.0, 100.0)}
BLOB_SIZES = {"A": 7, "B": 8, "C": 6, "D": 3}


def blobs():
    rng = np.random.default_rng(11)
    names = [name for name, size in BLOB_SIZES.items() for _ in range(size)]
    points = np.array([BLOB_CENTRES[name] for name in names]) + rng.normal(size=(len(names), 2))
    return points, np.array(names)


def most_typical(points: np.ndarray) -> int:
    """Position of the point of smallest mean distance to its min(20, m // 2) neighbours."""
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    k = min(20, len(points) // 2)
    return int(np.argmin(np.sort(distance, axis=1)[:, 1 : k + 1].mean(axis=1)))


def test_typiclust_picks_the_most_typical_point_of_the_largest_uncovered_clusters():
    """Budget 3, one labeled point: 4 clusters = the blobs. Visit order: A (no labeled point,
    7), C (none, 6), then B (one labeled; 8); D (3 points) is an outlier cluster."""
    points, names = blobs()
    labeled = np.flatnonzero(names == "B")[:1]
    candidates = np.setdiff1d(np.arange(len(points)), labeled)
    result = typiclust_select(points[labeled], points[candidates], 3, random_state=0)
    assert result.clusters == 4
    picked = candidates[result.order]
    assert names[picked].tolist() == ["A", "C", "B"]
    for pick, blob in zip(picked, "ACB", strict=True):
        members = candidates[names[candidates] == blob]
        assert pick == members[most_typical(points[members])]
    # Each candidate's cluster is its blob's.
    for blob in "ABCD":
        assert len(set(result.cluster[names[candidates] == blob])) == 1
    assert len(set(result.cluster.tolist())) == 4


def test_typiclust_query_on_the_blobs_and_its_scores():
    """The query clusters labeled ∪ candidates of the model's embedding (here the inputs)."""
    points, names = blobs()
    dataset = vector_dataset(points)
    labeled = np.flatnonzero(names == "B")[:1]
    candidates = np.setdiff1d(np.arange(len(points)), labeled)
    ctx = context("typiclust", dataset, labeled, candidates, 3, LogitsAreInputs(), seed=4)
    result = get_strategy("typiclust").query(ctx)
    assert names[result.chosen].tolist() == ["A", "C", "B"]
    table = result.scores.set_index("index")
    np.testing.assert_array_equal(table.loc[result.chosen, "score"], [3.0, 2.0, 1.0])
    rest = table.loc[~table["chosen"], "score"]
    assert (rest < 1).all() and (rest > 0).all()
    a = candidates[names[candidates] == "A"]
    np.testing.assert_allclose(table.loc[a, "typicality"], typicality(points[a], 3))


def test_typiclust_first_visits_the_largest_cluster_without_labeled_points():
    """Budget 2: 3 clusters for 4 blobs, so k-means merges two; the first pick comes from the
    largest cluster that holds no labeled point, whichever that is."""
    points, names = blobs()
    labeled = np.flatnonzero(names == "B")[:1]
    candidates = np.setdiff1d(np.arange(len(points)), labeled)
    result = typiclust_select(points[labeled], points[candidates], 2, random_state=0)
    assert result.clusters == 3
    labeled_cluster = result.cluster[
        np.argmin(np.linalg.norm(points[candidates] - points[labeled], axis=1))
    ]
    sizes = {c: int((result.cluster == c).sum()) for c in set(result.cluster.tolist())}
    uncovered = {c: n for c, n in sizes.items() if c != labeled_cluster}
    first = result.cluster[result.order[0]]
    assert sizes[first] == max(uncovered.values()) and first != labeled_cluster


def test_typiclust_with_only_small_clusters_still_picks_the_budget():
    """Clusters of <= 5 points are outliers, passed over while larger ones have candidates;
    when none is larger, they give their candidates (the authors' code would stop)."""
    points = np.arange(12, dtype=np.float64).reshape(6, 2)
    result = typiclust_select(points[:0], points, 6, random_state=0)
    assert sorted(result.order.tolist()) == list(range(6)) and result.clusters == 6


# ---------------------------------------------------------------- embedding.source: file


def file_experiment(path, **extra) -> ExperimentConfig:
    settings = {
        "dataset": "moons",
        "model": "mlp",
        "methods": ["random", "typiclust"],
        "initial_size": 10,
        "budget": 5,
        "stages": 2,
        "subset_size": 0,
        "embedding": {"source": "file", "path": str(path)},
        **extra,
    }
    return ExperimentConfig.from_dict("emb", settings)


MOONS_TRAIN = known_split_sizes("moons")[0]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not a readable .npy array"),
        (np.zeros(MOONS_TRAIN), r"need a 2-D array .* got shape \(\d+,\)"),
        (
            np.zeros((MOONS_TRAIN - 1, 4)),
            f"{MOONS_TRAIN - 1} rows, but the train split has {MOONS_TRAIN} ",
        ),
        (np.array([["a"]] * MOONS_TRAIN), "need real numbers"),
        (np.where(np.arange(MOONS_TRAIN * 2).reshape(-1, 2) == 613, np.nan, 0.0), "row 306 "),
        (np.full((MOONS_TRAIN, 2), np.inf), "row 0 holds NaN or infinite values"),
        (np.array([[{"pickled": 1}]] * MOONS_TRAIN, dtype=object), "not a readable .npy"),
    ],
)
def test_a_bad_embedding_file_is_one_error_naming_the_key_and_the_file(tmp_path, content, problem):
    path = tmp_path / "features.npy"
    if content is not None:
        np.save(path, content, allow_pickle=True)
    with pytest.raises(ConfigError, match=r"experiments\.emb\.embedding\.path: .*features\.npy"):
        check_experiment(file_experiment(path))
    with pytest.raises(ConfigError, match=problem):
        check_experiment(file_experiment(path))
    # Without a method that reads the embedding, the file is not read.
    check_experiment(file_experiment(path, methods=["random"]))


def test_embedding_keys_are_checked_together():
    with pytest.raises(ConfigError, match=r"embedding\.path: source 'file' needs"):
        ExperimentConfig.from_dict(
            "e", {"dataset": "moons", "model": "mlp", "embedding": {"source": "file"}}
        )
    with pytest.raises(ConfigError, match=r"embedding\.path: only read with source 'file'"):
        ExperimentConfig.from_dict(
            "e", {"dataset": "moons", "model": "mlp", "embedding": {"path": "x.npy"}}
        )


def test_typiclust_on_a_users_embedding_file(tmp_path):
    """The blobs come from the file; the model's own embedding (the inputs, random here) is not
    read."""
    points, names = blobs()
    path = tmp_path / "features.npy"
    np.save(path, points.astype(np.float32))
    rng = np.random.default_rng(0)
    dataset = vector_dataset(rng.normal(size=points.shape))
    labeled = np.flatnonzero(names == "B")[:1]
    candidates = np.setdiff1d(np.arange(len(points)), labeled)
    ctx = context("typiclust", dataset, labeled, candidates, 3, LogitsAreInputs(), seed=4)
    exp = dataclasses.replace(
        ctx.experiment, embedding=EmbeddingConfig(source="file", path=str(path))
    )
    result = get_strategy("typiclust").query(dataclasses.replace(ctx, experiment=exp))
    assert names[result.chosen].tolist() == ["A", "C", "B"]
    # A file of another row count is refused by the query too.
    np.save(path, points[:-1])
    with pytest.raises(ConfigError, match="23 rows, but the train split has 24"):
        get_strategy("typiclust").query(dataclasses.replace(ctx, experiment=exp))


def test_the_embedding_files_contents_enter_typiclusts_settings_only(tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, np.zeros((MOONS_TRAIN, 2)))
    exp = file_experiment(path)
    before = method_hash(exp, "typiclust")
    assert method_settings(exp, "typiclust")["embedding"]["source"] == "file"
    assert method_hash(exp, "random") == method_hash(
        dataclasses.replace(exp, embedding=EmbeddingConfig()), "random"
    )
    np.save(path, np.ones((MOONS_TRAIN, 2)))
    assert method_hash(file_experiment(path), "typiclust") != before
    task_model = dataclasses.replace(exp, embedding=EmbeddingConfig())
    assert method_settings(task_model, "typiclust")["embedding"] == {"source": "task_model"}


# ---------------------------------------------------------------- ProbCover


def test_purity_radius_is_the_largest_radius_with_enough_pure_balls():
    # Clusters {0, 1, 2} and {10, 11}: distances to the other cluster 10, 9, 8, 8, 9.
    line = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    cluster = np.array([0, 0, 0, 1, 1])
    # 95% of 5 balls: all pure, so δ may reach the smallest of them, 8 (open balls).
    assert purity_radius(line, cluster) == (8.0, 1.0)
    # 60%: two balls may be impure: δ = 9, where 3 of 5 (distances 9, 9, 10) stay pure.
    assert purity_radius(line, cluster, purity=0.6) == (9.0, 0.6)
    # Row blocks of one row: the same.
    assert purity_radius(line, cluster, purity=0.6, block_bytes=1) == (9.0, 0.6)
    assert purity_radius(line, np.zeros(5, dtype=int)) == (0.0, 1.0)


# Labeled point 0; candidates 1, 2, 5, 6, 7, 20; open balls of radius 1.5. The labeled ball
# covers 0 and 1; the candidates' balls would newly cover: 1 -> {2}, 2 -> {2}, 5 -> {5, 6},
# 6 -> {5, 6, 7}, 7 -> {6, 7}, 20 -> {20}. Greedy: 6 (gain 3); then 1, 2 and 20 gain 1 each
# and the smallest position (1) goes; it covers 2; then 20; then all 7 points are covered.
COVER_LABELED = np.array([[0.0]])
COVER_CANDIDATES = np.array([[1.0], [2.0], [5.0], [6.0], [7.0], [20.0]])


def test_probcover_coverage_gain_and_greedy_picks():
    rng = np.random.default_rng(0)
    result = probcover_select(COVER_LABELED, COVER_CANDIDATES, 3, 1.5, rng)
    np.testing.assert_array_equal(result.initial_gain, [1, 1, 2, 3, 2, 1])
    np.testing.assert_array_equal(result.order, [3, 0, 5])
    np.testing.assert_array_equal(result.final_gain, 0)
    assert result.covered_before == pytest.approx(2 / 7) and result.covered_after == 1.0
    # Blocks of one row give the same; past full coverage the picks are uniform draws.
    small = probcover_select(COVER_LABELED, COVER_CANDIDATES, 3, 1.5, rng, block_bytes=1)
    np.testing.assert_array_equal(small.order, [3, 0, 5])
    full = probcover_select(COVER_LABELED, COVER_CANDIDATES, 6, 1.5, np.random.default_rng(0))
    assert full.order[:3].tolist() == [3, 0, 5]
    assert sorted(full.order.tolist()) == list(range(6))


def test_probcover_query_reports_its_radius_and_coverage():
    points, names = blobs()
    dataset = vector_dataset(points)
    labeled = np.flatnonzero(names == "B")[:1]
    candidates = np.setdiff1d(np.arange(len(points)), labeled)
    lines = []
    ctx = context("probcover", dataset, labeled, candidates, 3, LogitsAreInputs(), seed=2)
    ctx.log = lines.append
    result = get_strategy("probcover").query(ctx)
    # The same steps by hand: k-means into the dataset's 2 classes, δ by purity, coverage.
    rng = numpy_rng(2, 0, "query/probcover")
    points = dataset.x_train.astype(np.float64)  # the model's float32 embedding
    ordered = np.concatenate([labeled, candidates])
    assignment = kmeans_labels(points[ordered], 2, int(rng.integers(2**31)))
    delta, purity = purity_radius(points[ordered], assignment)
    expected = probcover_select(points[labeled], points[candidates], 3, delta, rng)
    np.testing.assert_array_equal(result.chosen, candidates[expected.order])
    assert result.diagnostics["ball_radius"] == delta > 0
    assert result.diagnostics["ball_purity"] == purity >= 0.95
    assert result.diagnostics["coverage_after"] > result.diagnostics["coverage_before"]
    assert any(f"ball radius {delta:.4g} (purity {purity:.3f})" in line for line in lines)
    table = result.scores.set_index("index")
    np.testing.assert_array_equal(table.loc[result.chosen, "score"], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(table.loc[candidates, "coverage_gain"], expected.initial_gain)


@pytest.mark.parametrize(("n_labeled", "budget"), [(3, 4), (60, 10)])
def test_typiclust_visits_clusters_in_order_with_full_and_mini_batch_kmeans(n_labeled, budget):
    """7 clusters (full k-means) or 70 (mini-batch, above 50): the first pick is the most
    typical candidate of the first cluster in visit order (fewest labeled, then largest among
    those of more than 5 points), and the call repeats exactly."""
    rng = np.random.default_rng(3)
    points = rng.normal(size=(300, 4))
    labeled, candidates = points[:n_labeled], points[n_labeled:]
    result = typiclust_select(labeled, candidates, budget, random_state=5)
    again = typiclust_select(labeled, candidates, budget, random_state=5)
    np.testing.assert_array_equal(result.order, again.order)
    assert result.clusters == n_labeled + budget
    assert len(set(result.order.tolist())) == budget
    # Recover the labeled points' clusters: the same k-means on the same points and seed.
    everything = kmeans_labels(points, result.clusters, 5)
    np.testing.assert_array_equal(everything[n_labeled:], result.cluster)
    size = np.bincount(everything, minlength=result.clusters)
    held = np.bincount(everything[:n_labeled], minlength=result.clusters)
    eligible = [c for c in range(result.clusters) if size[c] > 5]
    first = min(eligible, key=lambda c: (held[c], -size[c], c))
    assert result.cluster[result.order[0]] == first
    members = np.flatnonzero(result.cluster == first)
    assert result.order[0] == members[most_typical(candidates[members])]


# ---------------------------------------------------------------- embedding.source: vae


def vae_context(seed=0):
    """Blobs as inputs, scaled to unit size as a dataset's normalisation would; a small MLP VAE
    (`vae` settings) trained for a few iterations."""
    points, names = blobs()
    dataset = vector_dataset(points / np.abs(points).max())
    labeled = np.flatnonzero(names == "B")[:1]
    candidates = np.setdiff1d(np.arange(len(points)), labeled)
    ctx = context("typiclust", dataset, labeled, candidates, 3, LogitsAreInputs(), seed=seed)
    exp = dataclasses.replace(
        ctx.experiment,
        embedding=EmbeddingConfig(source="vae"),
        vae=dataclasses.replace(
            ctx.experiment.vae, latent_dim=2, hidden=16, iterations=30, batch_size=8
        ),
    )
    return dataclasses.replace(ctx, experiment=exp), names


def test_the_vae_embedding_is_the_plain_vaes_latent_means_in_the_callers_order():
    from tavaal.adversarial import PLAIN_VAE, score_rows
    from tavaal.strategies._adversarial import train_query_adversary
    from tavaal.strategies._embedding import embedding_rows

    ctx, _ = vae_context()
    # The VAE vae_wasserstein trains, encoded by hand.
    adversary = train_query_adversary(ctx, False, variant=PLAIN_VAE)
    batch = ctx.experiment.query.inference_batch_size
    by_hand = score_rows(
        adversary.trained, adversary.data, adversary.cand_pos, ctx.device, batch
    ).mu
    wanted = np.asarray(ctx.candidates)[::-1]  # another order than the query's
    rows = embedding_rows(ctx, wanted)
    assert rows.shape == (len(wanted), 2) and rows.dtype == np.float64
    np.testing.assert_array_equal(rows, np.asarray(by_hand, dtype=np.float64)[::-1])
    assert np.isfinite(rows).all() and np.ptp(rows, axis=0).min() > 0
    labeled_row = embedding_rows(ctx, ctx.labeled)
    assert labeled_row.shape == (1, 2) and np.isfinite(labeled_row).all()
    # Only the query's rows have codes.
    outside = np.setdiff1d(np.arange(ctx.dataset.info.n_train), np.r_[ctx.labeled, ctx.candidates])
    if len(outside):
        with pytest.raises(IndexFileError, match="neither labeled nor a candidate"):
            embedding_rows(ctx, outside[:1])


def test_typiclust_on_the_vaes_codes_picks_the_budget_and_repeats():
    ctx, _ = vae_context(seed=2)
    first = get_strategy("typiclust").query(ctx)
    again = get_strategy("typiclust").query(ctx)
    assert len(set(first.chosen.tolist())) == 3
    assert set(first.chosen.tolist()) <= set(ctx.candidates.tolist())
    np.testing.assert_array_equal(first.chosen, again.chosen)


def test_the_vae_settings_enter_the_hash_only_with_the_vae_source(tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, np.zeros((MOONS_TRAIN, 2)))
    base = dataclasses.replace(file_experiment(path), embedding=EmbeddingConfig(source="vae"))
    wider = dataclasses.replace(base, vae=dataclasses.replace(base.vae, latent_dim=8))
    assert method_settings(base, "typiclust")["embedding"] == {"source": "vae"}
    assert method_hash(base, "typiclust") != method_hash(wider, "typiclust")
    task_model = dataclasses.replace(base, embedding=EmbeddingConfig())
    task_model_wider = dataclasses.replace(wider, embedding=EmbeddingConfig())
    assert method_hash(task_model, "typiclust") == method_hash(task_model_wider, "typiclust")


def test_a_vae_embedding_query_is_sized_with_its_vae(tmp_path):
    from tavaal.resources import query_estimate

    path = tmp_path / "features.npy"
    np.save(path, np.zeros((MOONS_TRAIN, 2)))
    base = dataclasses.replace(file_experiment(path), embedding=EmbeddingConfig())
    with_vae = dataclasses.replace(base, embedding=EmbeddingConfig(source="vae"))
    plain = query_estimate(base, "typiclust", 0, "cpu")
    trained = query_estimate(with_vae, "typiclust", 0, "cpu")
    assert trained.seconds > plain.seconds
