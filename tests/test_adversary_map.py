"""Issue 9 diagnostics: the rank normalisation of new points, the geometry of two-moons picks,
and the exact replay of a finished VAAL / TA-VAAL query's adversary."""

import numpy as np
import pandas as pd
import pytest
import yaml

from tavaal.adversarial.conditioning import (
    RANK_NORMALIZATIONS,
    normalise_rank,
    normalise_rank_against,
)
from tavaal.adversary_replay import (
    QueryPicks,
    adversary_map,
    query_picks_from_files,
    replay_adversary_maps,
    replay_query_adversary,
)
from tavaal.cli import main
from tavaal.config import experiment_from_config
from tavaal.data.moons_geometry import bayes_class1_probability, level_set_points, moon_arcs
from tavaal.data.synthetic import _moons
from tavaal.layout import run_file
from tavaal.pool import read_scores
from tavaal.report import plot_adversary_map, selection_geometry, summarise_geometry
from tavaal.report.selection_geometry import local_spacing, point_geometry
from tavaal.stage import load_experiment_dataset


@pytest.mark.parametrize("mode", RANK_NORMALIZATIONS)
def test_rank_of_the_reference_itself_is_the_training_input(mode):
    r = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 0.5, -4.0])
    for got, want in zip(normalise_rank_against(r, r, mode), normalise_rank(r, mode), strict=True):
        np.testing.assert_allclose(got, want)


def test_quantile_of_new_points_is_their_mid_rank_among_the_reference():
    reference = np.array([0.0, 1.0, 2.0, 3.0])
    got, _ = normalise_rank_against(np.array([-1.0, 0.5, 2.0, 10.0]), reference, "quantile")
    # below all: 0; between the 1st and 2nd: 1/4; equal to the 3rd: its own (3 - 0.5) / 4;
    # above all: 1.
    np.testing.assert_allclose(got, [0.0, 0.25, 0.625, 1.0])


def test_bayes_boundary_separates_the_moons_and_leans_to_the_minority():
    x, y = _moons("moons/train")
    p = bayes_class1_probability(x)
    assert np.mean((p > 0.5) == y) > 0.95
    upper, lower = moon_arcs()
    assert bayes_class1_probability(upper[[250]])[0] < 0.01  # top of the majority moon
    assert bayes_class1_probability(lower[[25]])[0] > 0.5  # bottom of the minority moon
    # Midway between the noiseless moons the ten times more numerous class wins.
    assert bayes_class1_probability(np.array([[0.5, 0.25]]))[0] < 0.5


def test_local_spacing_skips_the_point_itself():
    pool = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(local_spacing(pool[:1], pool, k=1), [1.0])
    np.testing.assert_allclose(local_spacing(np.array([[2.9, 0.0]]), pool, k=1), [0.1])


def test_level_set_points_lie_on_the_crossing():
    gx, gy = np.meshgrid(np.linspace(0, 1, 11), np.linspace(0, 1, 5))
    points = level_set_points(gx, gy, gx, level=0.52)
    np.testing.assert_allclose(points[:, 0], 0.55)
    assert len(points) == 5
    assert len(level_set_points(gx, gy, gx, level=2.0)) == 0


def _picks(candidates, chosen, boundary=None, **more):
    return QueryPicks("a", 0, 1, candidates, chosen, np.arange(100, 120), boundary, **more)


def test_selection_geometry_compares_picks_with_candidates():
    x, y = _moons("moons/train")
    true_distance = point_geometry(x, np.arange(len(x)))["dist_true_boundary"].to_numpy()
    candidates = np.arange(100)
    near = candidates[np.argsort(true_distance[candidates])[:10]]
    table = selection_geometry(x, y, [_picks(candidates, near)])
    row = table.iloc[0]
    assert row["picks_dist_true_boundary"] < row["candidates_dist_true_boundary"] / 3
    assert "picks_dist_model_boundary" not in table and "rank_auc" not in table
    # Top-10 along a direction is tighter than the candidates; farthest from 20 labeled wider.
    assert row["linear_top_spread"] < row["candidates_spread"] < row["farthest_spread"]
    line = np.c_[np.zeros(50), np.linspace(-2, 2, 50)]  # a model boundary along x1 = 0
    table = selection_geometry(x, y, [_picks(candidates, near, line)])
    got = table.iloc[0]["picks_dist_model_boundary"]
    np.testing.assert_allclose(got, np.abs(x[near, 0]).mean(), atol=0.05)
    table = selection_geometry(x, y, [_picks(candidates, near, np.zeros((0, 2)))])
    assert np.isnan(table.iloc[0]["picks_dist_model_boundary"])
    summary = summarise_geometry(pd.concat([table, table.assign(seed=1)]))
    assert summary.loc[0, "queries"] == 2


def test_selection_geometry_rank_columns():
    x, y = _moons("moons/train")
    candidates = np.arange(100)
    rank = np.linspace(0.0, 1.0, 100)
    scores = pd.DataFrame(
        {
            "index": candidates[::-1],  # any order: rows are matched by index
            "rank_input": rank[::-1],
            "disc_logit": -rank[::-1],  # D calls high rank inputs unlabeled
            "predicted_loss": rank[::-1],
            "true_loss": rank[::-1] ** 2,
        }
    )
    chosen = candidates[-10:]  # the 10 highest rank inputs
    labeled_rank = np.full(20, -1.0)  # every labeled point below every candidate
    row = selection_geometry(
        x, y, [_picks(candidates, chosen, scores=scores, labeled_rank_input=labeled_rank)]
    ).iloc[0]
    np.testing.assert_allclose([row["rank_logit_rho"], row["loss_rank_rho"]], [-1.0, 1.0])
    assert row["picks_top_rank_share"] == 1.0 and row["rank_auc"] == 1.0
    row = selection_geometry(
        x, y, [_picks(candidates, chosen, scores=scores, labeled_rank_input=rank[::5])]
    ).iloc[0]
    assert abs(row["rank_auc"] - 0.5) < 0.05


CONFIG = {
    "experiments": {
        "tiny_moons": {
            "dataset": "moons",
            "model": "mlp",
            "methods": ["random", "vaal", "tavaal"],
            "seeds": [0],
            "initial_size": 20,
            "budget": 10,
            "stages": 2,
            "subset_size": 100,
            "train": {"epochs": 5, "batch_size": 32, "optimizer": "adam", "lr": 0.1},
            "vae": {"latent_dim": 4, "hidden": 16, "disc_hidden": 16, "iterations": 20},
        }
    }
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("moons")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    args = ["run", "--config", str(config), "--results-dir", str(root / "results")]
    code = main([*args, "--data-dir", str(root / "data"), "--device", "cpu"])
    assert code == 0
    exp = experiment_from_config(CONFIG, "tiny_moons")
    dataset = load_experiment_dataset(exp, root / "data")
    return root, exp, dataset


def _files(root, method, name):
    return run_file(root / "results", "tiny_moons", method, 0, 0, name)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vaal", "tavaal"])
def test_replay_retrains_the_querys_own_adversary(finished, method):
    root, exp, dataset = finished
    replayed = replay_query_adversary(
        exp,
        method,
        0,
        0,
        _files(root, method, "labeled.parquet"),
        _files(root, method, "scores.parquet"),
        _files(root, method, "model.pt"),
        dataset,
    )
    stored, _ = read_scores(_files(root, method, "scores.parquet"))
    assert replayed.max_logit_difference == 0.0
    np.testing.assert_array_equal(replayed.candidate_logits, stored["disc_logit"].to_numpy())
    chosen = stored.loc[stored["chosen"], "index"].to_numpy()
    assert set(replayed.chosen) == set(chosen)

    grid = adversary_map(replayed, dataset, resolution=12)
    assert grid.disc_logit.shape == (12, 12) and np.isfinite(grid.disc_logit).all()
    assert (grid.rank_input is not None) == (method == "tavaal")
    if grid.rank_input is not None:
        assert ((grid.rank_input >= 0) & (grid.rank_input <= 1)).all()
    assert grid.latent_candidates.shape == (len(replayed.candidates), 2)
    assert 0.0 <= grid.explained_variance.sum() <= 1.0 + 1e-9


@pytest.mark.slow
def test_figure_and_table_from_files(finished):
    root, exp, dataset = finished
    methods = ["vaal", "tavaal"]
    dataset, maps = replay_adversary_maps(
        exp,
        [_files(root, m, "labeled.parquet") for m in methods],
        [_files(root, m, "scores.parquet") for m in methods],
        [_files(root, m, "model.pt") for m in methods],
        root / "data" / "moons",
        seed=0,
        stage=0,
    )
    fig = plot_adversary_map(dataset.x_train, dataset.y_train, maps)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("VAAL, seed 0, query 0: D logit") for t in titles)
    assert any(t.startswith("TA-VAAL, seed 0, query 0: rank input") for t in titles)
    assert any("D AUC" in t for t in titles)

    methods = ["random", "vaal", "tavaal"]
    dataset, picks = query_picks_from_files(
        exp,
        [_files(root, m, "scores.parquet") for m in methods],
        [_files(root, m, "labeled.parquet") for m in methods],
        [_files(root, m, "model.pt") for m in methods],
        root / "data" / "moons",
    )
    table = selection_geometry(dataset.x_train, dataset.y_train, picks)
    assert list(table["method"]) == methods
    assert (table["picks_dist_true_boundary"] >= 0).all()
    # Only TA-VAAL's scores have a rank input; it was recomputed and matched the stored one.
    assert table["rank_auc"].notna().tolist() == [False, False, True]
    # The adversary's health comes with the adversarial queries only.
    assert table["disc_auc"].notna().tolist() == [False, True, True]
    assert (table["recon_ratio"].dropna() > 0).all()
    assert (table["candidates_minority_share"] == table["candidates_minority_share"][0]).all()
