"""Uncertainty scores against hand-computed values; k-center greedy against a brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tavaal.diversity as diversity
from tavaal.diversity import k_center_greedy, min_sq_distances
from tavaal.uncertainty import bald, entropy, softmax, variation_ratio, with_tie_break

LN2 = math.log(2.0)


# ---------------------------------------------------------------- entropy, BALD, variation ratio


def test_softmax_values_and_overflow():
    probs = softmax(np.array([[0.0, 0.0], [math.log(3.0), 0.0], [1000.0, 0.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.75, 0.25], [1.0, 0.0]], atol=1e-12)


def test_entropy_hand_computed():
    probs = np.array(
        [
            [0.5, 0.5, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.25, 0.25, 0.25, 0.25],
            [0.7, 0.2, 0.1, 0.0],
        ]
    )
    # -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) = 0.249672 + 0.321888 + 0.230259
    expected = [LN2, 0.0, math.log(4.0), 0.8018186]
    np.testing.assert_allclose(entropy(probs), expected, atol=1e-6)
    assert entropy(probs)[1] == 0.0  # 0 log 0 = 0, no NaN


def test_bald_hand_computed():
    # T = 2 passes of 3 samples with K = 2.
    mc = np.array(
        [
            [[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]],
            [[0.0, 1.0], [0.5, 0.5], [0.1, 0.9]],
        ]
    )
    h_09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325083
    # Confident but contradicting passes: H[mean] = ln 2, E[H] = 0. Agreeing uncertain passes: 0.
    np.testing.assert_allclose(bald(mc), [LN2, 0.0, LN2 - h_09], atol=1e-12)


@given(
    probs=st.lists(st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3), min_size=1, max_size=6),
    passes=st.integers(1, 6),
)
@settings(max_examples=25, deadline=None)
def test_bald_zero_when_all_passes_agree(probs, passes):
    p = np.asarray(probs)
    p = p / p.sum(axis=1, keepdims=True)
    mc = np.repeat(p[None], passes, axis=0)
    np.testing.assert_allclose(bald(mc), 0.0, atol=1e-12)
    assert (bald(mc) >= 0).all()


@given(st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_bald_nonnegative_and_bounded_by_mean_entropy(seed):
    rng = np.random.default_rng(seed)
    mc = rng.dirichlet(np.ones(4) * 0.5, size=(5, 7))  # (T, N, K)
    value = bald(mc)
    assert (value >= 0).all()
    assert (value <= entropy(mc.mean(axis=0)) + 1e-12).all()


def _one_hot_passes(votes: list[list[int]], classes: int) -> np.ndarray:
    """(T, N, K) probabilities whose argmax in pass t for sample n is votes[n][t]."""
    votes_arr = np.asarray(votes).T  # (T, N)
    mc = np.full((*votes_arr.shape, classes), 0.1 / (classes - 1))
    np.put_along_axis(mc, votes_arr[..., None], 0.9, axis=2)
    return mc


def test_variation_ratio_hand_computed():
    mc = _one_hot_passes(
        [
            [0, 0, 1, 2],  # mode 0 twice: 1 - 2/4
            [1, 1, 1, 1],  # unanimous
            [0, 1, 0, 1],  # tied modes: the value is 1 - 2/4 whichever mode is taken
            [2, 2, 2, 0],  # 1 - 3/4
        ],
        classes=3,
    )
    np.testing.assert_allclose(variation_ratio(mc), [0.5, 0.0, 0.5, 0.25])
    three = _one_hot_passes([[0, 1, 2], [1, 1, 0]], classes=3)
    np.testing.assert_allclose(variation_ratio(three), [2 / 3, 1 / 3])


def test_variation_ratio_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(T, N, K\)"):
        variation_ratio(np.ones((4, 2)))


def test_with_tie_break_orders_by_primary_then_secondary():
    levels = 5
    primary = np.array([0.2, 0.2, 0.4, 0.0, 0.4, 0.2])
    secondary = np.array([0.3, 0.9, 0.0, LN2, 0.1, 0.9])
    score = with_tie_break(primary, levels, secondary, LN2)
    # Level first (0.4 > 0.2 > 0), then the secondary value; equal pairs stay equal.
    assert list(np.lexsort((np.arange(6), -score))) == [4, 2, 1, 5, 0, 3]
    assert score[1] == score[5]
    # Never more than half a grid step away from the primary value.
    assert (score - primary < 0.5 / levels + 1e-15).all() and (score >= primary).all()
    # Degenerate upper bound (one class): the primary value alone.
    np.testing.assert_array_equal(with_tie_break(primary, levels, secondary, 0.0), primary)


# ---------------------------------------------------------------- k-center greedy


def brute_force_k_center(points, centers, budget, first=None):
    """Textbook k-center greedy: distances recomputed from scratch, ties to the lowest index."""
    points = np.asarray(points, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, points.shape[1])
    picks: list[int] = []
    for step in range(budget):
        if step == 0 and first is not None:
            picks.append(first)
            continue
        all_centers = np.concatenate([centers, points[picks]])
        d = ((points[:, None, :] - all_centers[None, :, :]) ** 2).sum(axis=2).min(axis=1)
        d[picks] = -1.0
        picks.append(int(np.argmax(d)))
    return picks


@st.composite
def point_sets(draw, allow_empty_centers=False):
    """Small integer coordinates: every squared distance is exact in float64, ties included."""
    dim = draw(st.integers(1, 4))
    n = draw(st.integers(1, 30))
    n_centers = draw(st.integers(0 if allow_empty_centers else 1, 12))
    coords = st.integers(-6, 6)
    points = draw(st.lists(st.lists(coords, min_size=dim, max_size=dim), min_size=n, max_size=n))
    centers = draw(
        st.lists(
            st.lists(coords, min_size=dim, max_size=dim), min_size=n_centers, max_size=n_centers
        )
    )
    budget = draw(st.integers(0, n))
    return (
        torch.tensor(points, dtype=torch.float64),
        torch.tensor(centers, dtype=torch.float64).reshape(n_centers, dim),
        budget,
    )


@given(point_sets(), st.integers(1, 5))
@settings(max_examples=25, deadline=None)
def test_k_center_greedy_matches_brute_force(data, chunk):
    points, centers, budget = data
    result = k_center_greedy(points, centers, budget, chunk_size=chunk)
    assert result.order.tolist() == brute_force_k_center(points, centers, budget)
    # Initial distances: to the nearest labeled centre.
    d0 = np.sqrt(((points.numpy()[:, None] - centers.numpy()[None]) ** 2).sum(2).min(1))
    np.testing.assert_allclose(result.initial_distance, d0, atol=1e-12)
    # Final distances: to labeled + picks; the picks themselves sit at 0.
    all_centers = np.concatenate([centers.numpy(), points.numpy()[result.order]])
    d1 = np.sqrt(((points.numpy()[:, None] - all_centers[None]) ** 2).sum(2).min(1))
    np.testing.assert_allclose(result.final_distance, d1, atol=1e-12)


@given(point_sets(allow_empty_centers=True))
@settings(max_examples=25, deadline=None)
def test_k_center_greedy_without_centres_starts_farthest_from_mean(data):
    points, _, budget = data
    empty = points[:0]
    result = k_center_greedy(points, empty, budget)
    assert np.isinf(result.initial_distance).all()
    if budget == 0:
        assert len(result.order) == 0
        return
    to_mean = np.sqrt(((points.numpy() - points.numpy().mean(axis=0)) ** 2).sum(axis=1))
    first = int(result.order[0])
    assert to_mean[first] >= to_mean.max() - 1e-9
    # Among points (near-)equally far from the mean, the lowest index.
    assert first == int(np.flatnonzero(to_mean >= to_mean.max() - 1e-9)[0])
    assert result.order.tolist() == brute_force_k_center(points, empty, budget, first=first)


@given(point_sets(allow_empty_centers=True))
@settings(max_examples=25, deadline=None)
def test_k_center_chunking_does_not_change_the_result(data):
    points, centers, budget = data
    results = [k_center_greedy(points, centers, budget, chunk_size=c) for c in (1, 2, 10**6)]
    for other in results[1:]:
        np.testing.assert_array_equal(other.order, results[0].order)
        np.testing.assert_array_equal(other.initial_distance, results[0].initial_distance)
        np.testing.assert_array_equal(other.final_distance, results[0].final_distance)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_center_chunking_on_continuous_float32_embeddings(seed):
    gen = torch.Generator().manual_seed(seed)
    points = torch.randn(200, 16, generator=gen)
    centers = torch.randn(57, 16, generator=gen)
    small = k_center_greedy(points, centers, 40, chunk_size=1)
    large = k_center_greedy(points, centers, 40, chunk_size=10**6)
    np.testing.assert_array_equal(small.order, large.order)
    np.testing.assert_allclose(small.initial_distance, large.initial_distance, rtol=1e-5)
    exact = torch.cdist(points.double(), centers.double()).min(dim=1).values.numpy()
    np.testing.assert_allclose(small.initial_distance, exact, rtol=1e-4, atol=1e-4)


def test_min_sq_distances_never_builds_more_than_a_chunk(monkeypatch):
    widths = []
    original = diversity._sq_distances

    def recording(points, points_sq, centers):
        widths.append(centers.shape[0])
        return original(points, points_sq, centers)

    monkeypatch.setattr(diversity, "_sq_distances", recording)
    points = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    centers = torch.randn(23, 3, generator=torch.Generator().manual_seed(1))
    got = min_sq_distances(points, centers, chunk_size=4)
    assert max(widths) == 4 and sum(widths) == 23
    np.testing.assert_allclose(
        got.numpy(), (torch.cdist(points, centers) ** 2).min(1).values, rtol=1e-4
    )
    # Greedy steps look at one new centre at a time.
    widths.clear()
    k_center_greedy(points, centers, 10, chunk_size=4)
    assert max(widths) == 4 and widths.count(1) == 10


def test_k_center_greedy_never_repeats_duplicates():
    points = torch.zeros(6, 2, dtype=torch.float64)
    result = k_center_greedy(points, points[:1], 6)
    assert result.order.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(result.final_distance, 0.0)


def test_k_center_greedy_rejects_bad_budget():
    points = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="budget 4"):
        k_center_greedy(points, points, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        min_sq_distances(points, points, 0)
