import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tavaal.errors import IndexFileError
from tavaal.pool import (
    candidate_subset,
    class_count_entropy,
    initial_indices,
    make_table,
    read_labeled,
    read_scores,
    validation_indices,
    write_labeled,
    write_scores,
)
from tavaal.seeding import numpy_rng

META = {"experiment": "e", "method": "random", "seed": 0, "stage": 1, "settings_hash": "abc"}
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], dtype=np.int64)


def write(path, indices, stage_added, labels=None, meta=META):
    labels = Y[indices] if labels is None else labels
    write_labeled(
        path, make_table(np.array(indices), np.array(labels), np.array(stage_added)), meta
    )


def test_round_trip_and_metadata(tmp_path):
    path = tmp_path / "labeled.parquet"
    write(path, [5, 1, 3], [0, 1, 0])
    labeled = read_labeled(path, Y, expected_stage=1, expected={"method": "random", "seed": 0})
    assert labeled.indices.tolist() == [1, 3, 5]  # stored sorted by index
    assert labeled.labels.tolist() == [1, 0, 2]
    assert labeled.table["stage_added"].tolist() == [1, 0, 0]
    assert labeled.table["score"].isna().all()
    assert labeled.metadata["settings_hash"] == "abc" and labeled.stage == 1


def test_same_content_gives_identical_bytes(tmp_path):
    write(tmp_path / "a.parquet", [4, 2, 7], [0, 0, 1])
    write(tmp_path / "b.parquet", [7, 4, 2], [1, 0, 0])
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


@pytest.mark.parametrize(
    ("indices", "stage_added", "labels", "message"),
    [
        ([1, 1], [0, 0], None, "index 1 appears twice"),
        ([1, 12], [0, 0], [1, 0], "index 12 is outside the train split"),
        ([-1, 2], [0, 0], [0, 2], "index -1 is outside the train split"),
        ([1, 2], [0, 0], [1, 1], "index 2 has label 1, the oracle says 2"),
        ([1, 2], [0, 2], None, "stage_added outside 0..1"),
    ],
)
def test_invariant_violations_name_file_and_problem(
    tmp_path, indices, stage_added, labels, message
):
    path = tmp_path / "labeled.parquet"
    write(path, indices, stage_added, labels)
    with pytest.raises(IndexFileError, match=message) as err:
        read_labeled(path, Y)
    assert str(path) in str(err.value)


def test_stage_and_metadata_mismatch(tmp_path):
    path = tmp_path / "labeled.parquet"
    write(path, [1], [0])
    with pytest.raises(IndexFileError, match="file is for stage 1, expected stage 2"):
        read_labeled(path, Y, expected_stage=2)
    with pytest.raises(IndexFileError, match="metadata method='random', expected 'vaal'"):
        read_labeled(path, Y, expected={"method": "vaal"})


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "labeled.parquet"
    write(path, [1, 2], [0, 0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFileError, match="truncated or corrupt"):
        read_labeled(path, Y)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"idx": [1, 2]}), foreign)
    with pytest.raises(IndexFileError, match="columns"):
        read_labeled(foreign, Y)
    with pytest.raises(IndexFileError, match="not found"):
        read_labeled(tmp_path / "nope.parquet", Y)


def test_scores_round_trip(tmp_path):
    table = pd.DataFrame({"index": [3, 4], "score": [0.5, 0.1], "chosen": [True, False]})
    path = tmp_path / "scores.parquet"
    write_scores(path, table, {**META, "query_seconds": 1.25, "diagnostics": {"disc_auc": 0.7}})
    back, meta = read_scores(path)
    pd.testing.assert_frame_equal(back, table)
    assert meta["query_seconds"] == 1.25 and meta["diagnostics"] == {"disc_auc": 0.7}


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 500), frac=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_initial_pool_is_a_function_of_size_and_seed(n, frac, seed):
    size = int(n * frac)
    first = initial_indices(n, size, seed)
    assert np.array_equal(first, initial_indices(n, size, seed))
    assert len(np.unique(first)) == size and (first >= 0).all() and (first < n).all()


@settings(max_examples=50, deadline=None)
@given(
    pool=st.lists(st.integers(0, 2000), min_size=1, max_size=300, unique=True),
    size=st.integers(0, 400),
    seed=st.integers(0, 100),
    stage=st.integers(0, 20),
)
def test_candidate_subset_draws_without_replacement_from_the_pool(pool, size, seed, stage):
    unlabeled = np.sort(np.array(pool, dtype=np.int64))
    subset = candidate_subset(unlabeled, size, seed, stage)
    expected = len(unlabeled) if size <= 0 or size >= len(unlabeled) else size
    assert len(subset) == expected == len(np.unique(subset))
    assert np.isin(subset, unlabeled).all()
    assert np.array_equal(subset, candidate_subset(unlabeled, size, seed, stage))


def test_initial_pool_too_large():
    with pytest.raises(IndexFileError, match="exceeds the 5 available training samples"):
        initial_indices(5, 6, 0)
    with pytest.raises(IndexFileError, match="exceeds the 3 available training samples"):
        initial_indices(5, 4, 0, excluded=np.array([0, 4]))


def test_initial_pool_avoids_the_validation_split_and_is_unchanged_without_one():
    held = validation_indices(1000, 200, 3)
    assert len(held) == 200 and len(set(held.tolist())) == 200
    assert np.array_equal(held, validation_indices(1000, 200, 3))
    pool = initial_indices(1000, 100, 3, held)
    assert not set(pool.tolist()) & set(held.tolist())
    # No validation split: the same draw as before the option existed (range(n)).
    assert np.array_equal(
        initial_indices(1000, 100, 3, validation_indices(1000, 0, 3)), initial_indices(1000, 100, 3)
    )
    legacy = np.sort(numpy_rng(3, None, "initial_pool").choice(1000, size=100, replace=False))
    assert np.array_equal(initial_indices(1000, 100, 3), legacy)


def test_class_count_entropy_hand_values():
    assert class_count_entropy(np.array([0, 0, 1, 1]), 3) == pytest.approx(np.log(2))
    assert class_count_entropy(np.array([2, 2, 2]), 3) == 0.0
    assert class_count_entropy(np.arange(10), 10) == pytest.approx(np.log(10))
