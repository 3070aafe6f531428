"""Every query method on segmentation (`seg_shapes`): the selection invariants classification
has (`tests/test_strategies.py`), the per-image scores against direct computations, and two
stages of the library's stage runner (init pool, train, query) for every method.

Models are `drn_tiny_test`, the narrow DRN-D-22 of `tests/test_segmentation_training.py`,
registered while this file's tests run. Scores are computed on the logits average-pooled over
`SCORE_STRIDE` windows (`tavaal.tasks.segmentation`); the direct computations below pool in
numpy.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset, to_tensor_batch
from tavaal.models import build_ranker
from tavaal.models import drn as drn_module
from tavaal.models.drn import DRN, DRN_BLOCKS
from tavaal.pool import read_labeled, read_scores
from tavaal.segmentation import mean_pixel_entropy, per_image_cross_entropy
from tavaal.stage import run_init_pool, run_query, run_train
from tavaal.strategies import QueryContext, get_strategy, list_strategies, strategy_class
from tavaal.tasks import get_task
from tavaal.tasks.segmentation import SCORE_STRIDE
from tavaal.training import TrainedModels, load_task_models
from tavaal.validation import check_experiment

TINY = "drn_tiny_test"
TINY_WIDTHS = (8, 8, 8, 16, 16, 32, 32, 32, 32)
SEG = get_task("segmentation")
METHODS = list_strategies("segmentation")
FAST = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _tiny(input_shape, num_classes, dropout=0.0):
    return DRN(input_shape[0], num_classes, DRN_BLOCKS["d_22"], dropout, TINY_WIDTHS)


@pytest.fixture(scope="module", autouse=True)
def tiny_model_registered():
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(drn_module.SEGMENTATION_MODELS._entries, TINY, _tiny)
        yield


EXPERIMENT = ExperimentConfig.from_dict(
    "segq",
    {
        "dataset": "seg_shapes",
        "model": TINY,
        "methods": METHODS,
        "initial_size": 8,
        "budget": 4,
        "subset_size": 24,
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "optimizer": "adam",
            "lr": 0.01,
            "weight_decay": 0.0,
            "milestones": [],
            "dropout": 0.3,
        },
        "ranker": {"detach_epoch": 100, "hidden": 8},
        "vae": {
            "latent_dim": 8,
            "base_channels": 8,
            "iterations": 6,
            "batch_size": 8,
            "disc_hidden": 16,
            "input_size": 16,
        },
        "query": {"mc_samples": 3, "ensemble_size": 2, "inference_batch_size": 16},
    },
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    return data_dir, load_dataset("seg_shapes", data_dir)


def make_models(method: str, info, model_seed: int, dropout: float = 0.3) -> TrainedModels | None:
    """Randomly initialised tiny DRN(s) (+ ranker on their taps), shaped as `method` trains."""
    cls = strategy_class(method)
    if not cls.uses_task_model:
        return None
    torch.manual_seed(model_seed)
    members = EXPERIMENT.query.ensemble_size if cls.recipe.ensemble else 1
    models = [_tiny(info.input_shape, info.num_classes, dropout).eval() for _ in range(members)]
    ranker = None
    if cls.recipe.ranker_loss:
        ranker = build_ranker(models[0], info.input_shape, hidden=8).eval()
    return TrainedModels(models=models, ranker=ranker)


def make_context(method, dataset, labeled, candidates, budget, seed=0, stage=0, models=None):
    labeled = np.sort(np.asarray(labeled, dtype=np.int64))
    return QueryContext(
        experiment=EXPERIMENT,
        method=method,
        seed=seed,
        stage=stage,
        dataset=dataset,
        labeled=labeled,
        candidates=np.sort(np.asarray(candidates, dtype=np.int64)),
        unlabeled=np.setdiff1d(np.arange(dataset.info.n_train), labeled).astype(np.int64),
        budget=budget,
        device=torch.device("cpu"),
        models=models,
        log=lambda line: None,
    )


def with_query(ctx: QueryContext, **query) -> QueryContext:
    exp = ctx.experiment
    return dataclasses.replace(
        ctx, experiment=dataclasses.replace(exp, query=dataclasses.replace(exp.query, **query))
    )


def pooled_logits(model, dataset, indices) -> np.ndarray:
    """float64 (n, K, h, w): the eval-mode logits of `indices`, averaged over SCORE_STRIDE x
    SCORE_STRIDE windows in numpy (seg_shapes' 64 x 64 divides evenly)."""
    with torch.no_grad():
        inputs = to_tensor_batch(
            torch.from_numpy(np.asarray(dataset.x_train[indices])), dataset.info
        )
        logits = model.eval()(inputs).logits.double().numpy()
    n, k, h, w = logits.shape
    s = SCORE_STRIDE
    return logits.reshape(n, k, h // s, s, w // s, s).mean(axis=(3, 5))


def pixel_rows(values: np.ndarray) -> np.ndarray:
    """(n, K, h, w) -> (n, h*w, K): one row per pixel."""
    return values.transpose(0, 2, 3, 1).reshape(len(values), -1, values.shape[1])


def pixel_probabilities(logits: np.ndarray) -> np.ndarray:
    """(n, K, h, w) logits -> (n, h*w, K) softmax rows."""
    rows = pixel_rows(logits)
    exp = np.exp(rows - rows.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def pixel_entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=-1)


def check_result(ctx: QueryContext, result) -> None:
    chosen = np.asarray(result.chosen)
    assert chosen.dtype == np.int64
    assert len(chosen) == ctx.budget == len(np.unique(chosen))
    assert np.isin(chosen, ctx.candidates).all()
    assert not np.isin(chosen, ctx.labeled).any()
    table = result.scores
    np.testing.assert_array_equal(np.sort(table["index"].to_numpy()), ctx.candidates)
    assert table["score"].dtype == np.float64 and not table["score"].isna().any()
    assert set(table.loc[table["chosen"], "index"]) == set(chosen.tolist())
    if not table["chosen"].all():
        picked = table.loc[table["chosen"], "score"].min()
        assert picked >= table.loc[~table["chosen"], "score"].max()


# ---------------------------------------------------------------- contract, every method


@pytest.mark.parametrize("method", METHODS)
@FAST
@given(data=st.data())
def test_every_method_picks_budget_unique_candidates_deterministically(shapes, method, data):
    _, dataset = shapes
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    pool = rng.permutation(40)  # the first 40 images: small queries
    n_labeled = data.draw(st.integers(1, 12))
    candidates = rng.choice(pool[n_labeled:], data.draw(st.integers(2, 10)), replace=False)
    models = make_models(method, dataset.info, data.draw(st.integers(0, 100)))
    ctx = make_context(
        method,
        dataset,
        pool[:n_labeled],
        candidates,
        budget=data.draw(st.integers(1, len(candidates))),
        seed=data.draw(st.integers(0, 100)),
        stage=data.draw(st.integers(0, 3)),
        models=models,
    )
    first = get_strategy(method).query(ctx)
    check_result(ctx, first)
    again = get_strategy(method).query(dataclasses.replace(ctx, candidate_logits=None))
    np.testing.assert_array_equal(again.chosen, first.chosen)
    np.testing.assert_array_equal(again.scores["score"], first.scores["score"])
    # A segmentation query never keeps the pool's (N, K, H, W) logits.
    assert ctx.candidate_logits is None


# ---------------------------------------------------------------- values


def test_entropy_is_the_mean_pixel_entropy_of_the_pooled_logits(shapes):
    _, dataset = shapes
    models = make_models("entropy", dataset.info, 3)
    candidates = np.arange(20, 30)
    ctx = make_context("entropy", dataset, np.arange(8), candidates, 3, models=models)
    table = get_strategy("entropy").query(ctx).scores.set_index("index")
    logits = pooled_logits(models.models[0], dataset, candidates)
    expected = pixel_entropy(pixel_probabilities(logits)).mean(axis=1)
    np.testing.assert_allclose(table.loc[candidates, "entropy"], expected, rtol=1e-5)
    assert (expected > 0).all() and (expected <= np.log(dataset.info.num_classes)).all()
    # `mean_pixel_entropy` is that score only on the pooled logits; at full resolution (no
    # query scores there) it is another number.
    pooled = mean_pixel_entropy(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(table.loc[candidates, "entropy"], pooled, rtol=1e-5)
    with torch.no_grad():
        inputs = to_tensor_batch(torch.from_numpy(dataset.x_train[candidates]), dataset.info)
        full = mean_pixel_entropy(models.models[0].eval()(inputs).logits).numpy()
    assert not np.allclose(full, pooled, rtol=1e-3)


@pytest.mark.parametrize("method", ["margin", "least_confidence"])
def test_margin_and_least_confidence_are_mean_pixel_values_of_the_pooled_logits(shapes, method):
    _, dataset = shapes
    models = make_models(method, dataset.info, 3)
    candidates = np.arange(20, 30)
    ctx = make_context(method, dataset, np.arange(8), candidates, 3, models=models)
    table = get_strategy(method).query(ctx).scores.set_index("index")
    probs = pixel_probabilities(pooled_logits(models.models[0], dataset, candidates))
    top_two = np.sort(probs, axis=-1)[..., -2:]
    if method == "margin":
        column, expected = "margin", (top_two[..., 1] - top_two[..., 0]).mean(axis=1)
    else:
        column, expected = "confidence", top_two[..., 1].mean(axis=1)
    np.testing.assert_allclose(table.loc[candidates, column], expected, rtol=1e-5)
    np.testing.assert_allclose(table.loc[candidates, "score"], 1 - expected, rtol=1e-5)


def test_entropy_does_not_depend_on_the_inference_batch_size(shapes):
    _, dataset = shapes
    models = make_models("entropy", dataset.info, 4)
    ctx = make_context("entropy", dataset, np.arange(8), np.arange(8, 29), 5, models=models)
    one = get_strategy("entropy").query(with_query(ctx, inference_batch_size=3)).scores
    other = get_strategy("entropy").query(with_query(ctx, inference_batch_size=16)).scores
    # The network's float32 rounding may change with the batch shape; the scoring groups do
    # not (test_score_rows_are_grouped_by_whole_images).
    np.testing.assert_allclose(one["entropy"], other["entropy"], rtol=1e-5)
    np.testing.assert_array_equal(one["chosen"], other["chosen"])
    assert len(set(one["entropy"])) == len(one)


@pytest.mark.parametrize("method", ["entropy", "bald", "ensemble_varr"])
def test_a_smaller_scoring_block_gives_the_same_scores(shapes, monkeypatch, method):
    """SCORE_BLOCK_BYTES bounds the float64 rows scored at once, not the values: one image per
    group scores exactly as the whole batch at once."""
    _, dataset = shapes
    models = make_models(method, dataset.info, 9, dropout=0.5)
    ctx = make_context(method, dataset, np.arange(8), np.arange(8, 28), 5, models=models)
    whole = get_strategy(method).query(ctx).scores
    monkeypatch.setattr("tavaal.tasks.segmentation.SCORE_BLOCK_BYTES", 1)
    grouped = get_strategy(method).query(ctx).scores
    np.testing.assert_array_equal(grouped["score"], whole["score"])


def test_score_rows_are_grouped_by_whole_images(monkeypatch):
    """Groups of images however small the memory cap: the same per-image means."""
    rng = np.random.default_rng(0)
    block = rng.normal(size=(3, 5, 4, 2, 3)).astype(np.float32)  # (T, b, K, h, w)
    whole = list(SEG.score_rows(block))
    assert [(lo, hi) for lo, hi, _ in whole] == [(0, 5)]
    assert whole[0][2].shape == (3, 5 * 6, 4)
    np.testing.assert_array_equal(
        whole[0][2][1, 6:12],
        block[1, 1].reshape(4, 6).T,  # image 1's pixels, pass 1
    )
    monkeypatch.setattr("tavaal.tasks.segmentation.SCORE_BLOCK_BYTES", 3 * 6 * 4 * 8 * 2)
    groups = list(SEG.score_rows(block))
    assert [(lo, hi) for lo, hi, _ in groups] == [(0, 2), (2, 4), (4, 5)]
    means = np.concatenate([SEG.sample_scores(rows[0].sum(-1), hi - lo) for lo, hi, rows in groups])
    np.testing.assert_array_equal(means, SEG.sample_scores(whole[0][2][0].sum(-1), 5))


@pytest.mark.parametrize("method", ["bald", "dbal", "var_ratio"])
def test_mc_dropout_scores_follow_the_seed_and_repeat(shapes, method):
    _, dataset = shapes
    models = make_models(method, dataset.info, 5, dropout=0.5)
    column = {"bald": "bald", "dbal": "entropy", "var_ratio": "score"}[method]
    ctx = make_context(method, dataset, np.arange(8), np.arange(8, 24), 4, seed=1, models=models)
    first = get_strategy(method).query(ctx).scores[column].to_numpy()
    again = get_strategy(method).query(ctx).scores[column].to_numpy()
    other = get_strategy(method).query(dataclasses.replace(ctx, seed=2)).scores[column]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other.to_numpy())


def test_bald_is_the_mean_pixel_mutual_information_of_the_passes(shapes):
    _, dataset = shapes
    models = make_models("bald", dataset.info, 6, dropout=0.5)
    candidates = np.arange(8, 20)
    ctx = make_context("bald", dataset, np.arange(8), candidates, 4, seed=3, models=models)
    table = get_strategy("bald").query(ctx).scores
    from tavaal.seeding import derive_seed

    batches = SEG.mc_dropout_batches(
        models.models[0],
        dataset.x_train,
        candidates,
        dataset.info,
        "cpu",
        3,
        derive_seed(3, 0, "query/mc_dropout"),
        16,
    )
    ((_, _, passes, _),) = list(batches)  # (T, n, K, h, w)
    probs = np.stack([pixel_rows(p.astype(np.float64)) for p in passes])
    mean = probs.mean(axis=0)
    info = pixel_entropy(mean) - pixel_entropy(probs).mean(axis=0)  # (n, P)
    np.testing.assert_allclose(table["bald"], np.maximum(info, 0).mean(axis=1), atol=1e-9)
    assert (table["bald"] > 0).all()


def test_qbc_committee_of_identical_members_never_disagrees(shapes):
    _, dataset = shapes
    models = make_models("ensemble_varr", dataset.info, 7)
    models.models[1].load_state_dict(models.models[0].state_dict())
    ctx = make_context("ensemble_varr", dataset, np.arange(8), np.arange(8, 24), 4, models=models)
    table = get_strategy("ensemble_varr").query(ctx).scores
    np.testing.assert_array_equal(table["var_ratio"], 0.0)
    # Then only the tie-break, the committee's mean pixel entropy, orders the candidates.
    assert (table["entropy"] > 0).all()
    # Two members of their own seeds disagree on some pixels.
    ctx = make_context(
        "ensemble_varr",
        dataset,
        np.arange(8),
        np.arange(8, 24),
        4,
        models=make_models("ensemble_varr", dataset.info, 8),
    )
    assert (get_strategy("ensemble_varr").query(ctx).scores["var_ratio"] > 0).any()


# ---------------------------------------------------------------- the stage runner


# One method of each training recipe (plain, margin ranker, ranking ranker, ensemble).
SECOND_STAGE = ["entropy", "lloss", "tavaal", "ensemble_varr"]


@pytest.fixture(scope="module")
def two_stages(shapes, tmp_path_factory):
    """Stage 0 of every method through `tavaal.stage`: one pool, one training per recipe, every
    method's query (stage 0 -> 1), a rerun of each query into another folder; then stage 1
    (training, query) of the SECOND_STAGE methods."""
    data_dir, dataset = shapes
    root = tmp_path_factory.mktemp("stages")
    quiet = lambda line: None  # noqa: E731
    check_experiment(EXPERIMENT)
    labeled = root / "labeled0.parquet"
    run_init_pool(EXPERIMENT, 0, data_dir, labeled, log=quiet)
    checkpoints = {}
    for method in METHODS:
        recipe = strategy_class(method).recipe
        if recipe.name not in checkpoints:
            checkpoints[recipe.name] = root / f"{recipe.name}.pt"
            run_train(
                EXPERIMENT,
                recipe,
                0,
                0,
                labeled,
                data_dir,
                checkpoints[recipe.name],
                root / f"{recipe.name}.json",
                device="cpu",
                log=quiet,
            )
    for run in ("a", "b"):
        for method in METHODS:
            model = checkpoints[strategy_class(method).recipe.name]
            run_query(
                EXPERIMENT,
                method,
                0,
                0,
                labeled,
                model if strategy_class(method).uses_task_model else None,
                data_dir,
                root / run / method / "labeled1.parquet",
                root / run / method / "scores0.parquet",
                device="cpu",
                log=quiet,
            )
    # Stage 1 of one method per training recipe: trained on what its query picked, queried.
    for method in SECOND_STAGE:
        run_dir = root / "a" / method
        run_train(
            EXPERIMENT,
            strategy_class(method).recipe,
            0,
            1,
            run_dir / "labeled1.parquet",
            data_dir,
            run_dir / "model1.pt",
            run_dir / "metrics1.json",
            method=method,
            device="cpu",
            log=quiet,
        )
        run_query(
            EXPERIMENT,
            method,
            0,
            1,
            run_dir / "labeled1.parquet",
            run_dir / "model1.pt",
            data_dir,
            run_dir / "labeled2.parquet",
            run_dir / "scores1.parquet",
            device="cpu",
            log=quiet,
        )
    return root, labeled, checkpoints


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_a_stage_and_reruns_identically(shapes, two_stages, method):
    _, dataset = shapes
    root, labeled0, _ = two_stages
    labels = SEG.label_table(dataset.y_train)
    before = read_labeled(labeled0, labels, 0)
    after = read_labeled(root / "a" / method / "labeled1.parquet", labels, 1)
    new = np.setdiff1d(after.indices, before.indices)
    assert len(after.indices) == len(before.indices) + EXPERIMENT.budget == 12
    assert len(new) == EXPERIMENT.budget
    scores, _ = read_scores(root / "a" / method / "scores0.parquet")
    assert len(scores) == EXPERIMENT.subset_size
    assert set(scores.loc[scores["chosen"], "index"]) == set(new.tolist())
    rerun, _ = read_scores(root / "b" / method / "scores0.parquet")
    np.testing.assert_array_equal(rerun["index"], scores["index"])
    np.testing.assert_array_equal(rerun["score"], scores["score"])


@pytest.mark.parametrize("method", ["entropy", "coreset", "ensemble_varr"])
def test_true_loss_is_each_images_mean_pixel_cross_entropy(shapes, two_stages, method):
    _, dataset = shapes
    root, _, checkpoints = two_stages
    recipe = strategy_class(method).recipe
    model = load_task_models(checkpoints[recipe.name], EXPERIMENT, recipe, dataset.info).models[0]
    scores, _ = read_scores(root / "a" / method / "scores0.parquet")
    indices = scores["index"].to_numpy()
    with torch.no_grad():
        x = to_tensor_batch(torch.from_numpy(np.asarray(dataset.x_train[indices])), dataset.info)
        masks = torch.from_numpy(np.asarray(dataset.y_train[indices]))
        expected = per_image_cross_entropy(model.eval()(x).logits, masks).numpy()
    np.testing.assert_allclose(scores["true_loss"], expected, rtol=1e-5)
    assert (expected > 0).all()


@pytest.mark.parametrize("method", SECOND_STAGE)
def test_a_second_stage_trains_on_the_picked_masks_and_queries_again(shapes, two_stages, method):
    _, dataset = shapes
    root, _, _ = two_stages
    run_dir = root / "a" / method
    metrics = json.loads((run_dir / "metrics1.json").read_text())
    assert metrics["stage"] == 1 and metrics["labels"] == 12 and metrics["metric"] == "miou"
    assert 0.0 <= metrics["miou"] <= 1.0
    labels = SEG.label_table(dataset.y_train)
    first = read_labeled(run_dir / "labeled1.parquet", labels, 1)
    second = read_labeled(run_dir / "labeled2.parquet", labels, 2)
    assert len(second.indices) == 16 and np.isin(first.indices, second.indices).all()
    scores, _ = read_scores(run_dir / "scores1.parquet")
    assert not np.isin(scores["index"], first.indices).any()
    assert (scores["true_loss"] > 0).all()


def test_index_files_say_their_labels_count_pixels_and_inspect_shows_them(
    shapes, two_stages, capsys
):
    """A segmentation index file's `label` column is each image's labeled-pixel count; its
    metadata says so, and `tavaal inspect` shows pixel counts instead of a class histogram."""
    from tavaal.cli import main

    _, dataset = shapes
    root, labeled0, _ = two_stages
    picked = root / "a" / "entropy" / "labeled1.parquet"
    for path in (labeled0, picked):
        assert read_labeled(path).metadata["label"] == "labeled_pixels"
    counts = SEG.label_table(dataset.y_train)[read_labeled(picked).indices]
    assert main(["inspect", str(picked), "--against", str(labeled0)]) == 0
    out = capsys.readouterr().out
    assert "label: labeled_pixels" in out
    assert (
        f"labeled pixels per image: {counts.min()} to {counts.max()}, "
        f"median {int(np.median(counts))}, {counts.sum()} in all"
    ) in out
    assert "class histogram" not in out
    assert "overlap with" in out and "8 shared, 4 only here, 0 only there" in out
