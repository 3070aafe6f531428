"""The simulated oracle (ideal and noisy, VAAL §5.2) and the biased initial pool, as functions
and through the stage functions on real prepared digits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tavaal.config import ExperimentConfig, OracleConfig, TrainConfig
from tavaal.data import has_class_groups, load_dataset
from tavaal.errors import ConfigError, IndexFileError
from tavaal.inference import forward_pool
from tavaal.oracle import confusion_groups, describe, noisy_answers, simulated_oracle
from tavaal.pool import excluded_initial_classes, read_labeled
from tavaal.stage import (
    experiment_oracle,
    load_experiment_dataset,
    run_init_pool,
    run_query,
    run_train,
)
from tavaal.training import PLAIN, load_task_models
from tavaal.validation import check_experiment

# Ten classes in five confusion groups of two: {0, 1}, {2, 3}, ...
PAIRS = np.arange(10) // 2


def true_labels(n: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, n).astype(np.int64)


@settings(max_examples=30, deadline=None)
@given(
    noise=st.floats(0.0, 0.9),
    seed=st.integers(0, 10_000),
    n=st.integers(20, 400),
)
def test_noisy_oracle_fraction_and_groups(noise, seed, n):
    y = true_labels(n, seed)
    answers = noisy_answers(y, noise, PAIRS, seed)
    wrong = answers != y
    assert wrong.sum() == round(noise * n)
    # A wrong label is always another class of the same group.
    assert (PAIRS[answers[wrong]] == PAIRS[y[wrong]]).all()
    assert ((answers >= 0) & (answers < 10)).all()


def test_noisy_oracle_is_fixed_per_seed_and_nested_across_levels():
    y = true_labels()
    first = noisy_answers(y, 0.2, PAIRS, seed=3)
    np.testing.assert_array_equal(first, noisy_answers(y, 0.2, PAIRS, seed=3))
    assert (first != noisy_answers(y, 0.2, PAIRS, seed=4)).any()
    # The samples mislabeled at 10% are mislabeled at 20% too, with the same wrong label.
    lower = noisy_answers(y, 0.1, PAIRS, seed=3)
    wrong_lower = lower != y
    assert wrong_lower.sum() == 100 and (first != y).sum() == 200
    np.testing.assert_array_equal(first[wrong_lower], lower[wrong_lower])


def test_noisy_oracle_skips_classes_alone_in_their_group():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2], dtype=np.int64)
    groups = np.array([0, 0, 1])  # class 2 has no other class in its group
    answers = noisy_answers(y, 0.5, groups, seed=0)
    assert (answers[4:] == 2).all()
    np.testing.assert_array_equal(answers[:4], [1, 1, 0, 0])
    with pytest.raises(ConfigError, match=r"oracle\.noise.*only 4 of 8 samples"):
        noisy_answers(y, 0.75, groups, seed=0)


def test_confusion_groups_from_each_source():
    dataset_groups = tuple(range(5)) * 2
    given_groups = OracleConfig(noise=0.1, confusion="groups", groups=((0, 1, 2), (7, 9)))
    group_of = confusion_groups(given_groups, 10, (), "e")
    assert group_of[0] == group_of[1] == group_of[2] and group_of[7] == group_of[9]
    assert len(set(group_of.tolist())) == 2 + 5  # 3, 4, 5, 6, 8 each alone
    any_other = confusion_groups(OracleConfig(noise=0.1, confusion="any"), 10, (), "e")
    assert set(any_other.tolist()) == {0}
    from_dataset = confusion_groups(OracleConfig(noise=0.1), 10, dataset_groups, "e")
    np.testing.assert_array_equal(from_dataset, dataset_groups)
    with pytest.raises(ConfigError, match=r"e\.oracle\.confusion: the dataset defines no"):
        confusion_groups(OracleConfig(noise=0.1), 10, (), "e")
    bad = OracleConfig(noise=0.1, confusion="groups", groups=((0, 12),))
    with pytest.raises(ConfigError, match=r"e\.oracle\.groups\[0\]: class 12 does not exist"):
        confusion_groups(bad, 10, (), "e")


def test_oracle_config_errors_name_the_key():
    base = {"dataset": "digits", "model": "digits_cnn"}
    cases = [
        ({"oracle": {"noise": 1.0}}, r"oracle\.noise: must be in \[0, 1\)"),
        ({"oracle": {"noise": 0.1, "confusion": "groups"}}, r"oracle\.groups: confusion"),
        (
            {"oracle": {"noise": 0.1, "confusion": "groups", "groups": [[0, 1], [1, 2]]}},
            r"oracle\.groups\[1\]: class 1 appears twice",
        ),
        ({"oracle": {"groups": [[0, 1]]}}, r"oracle\.groups: only read with"),
        ({"initial_excluded_classes": -1}, r"initial_excluded_classes: must be >= 0"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            ExperimentConfig.from_dict("e", {**base, **extra})
    # Only CIFAR-100 brings its own groups; elsewhere "dataset" is refused before any job.
    assert has_class_groups("cifar100") and not has_class_groups("digits")
    noisy = ExperimentConfig.from_dict("e", {**base, "oracle": {"noise": 0.1}})
    with pytest.raises(ConfigError, match=r"experiments\.e\.oracle\.confusion: digits defines"):
        check_experiment(noisy)


def test_the_ideal_oracle_leaves_settings_hashes_alone():
    ideal = ExperimentConfig(name="e", dataset="digits", model="digits_cnn")
    noisy = ExperimentConfig(
        name="e", dataset="digits", model="digits_cnn", oracle=OracleConfig(noise=0.2)
    )
    biased = ExperimentConfig(
        name="e", dataset="digits", model="digits_cnn", initial_excluded_classes=2
    )
    assert ideal.pool_settings() == {
        "dataset": "digits",
        "initial_size": 1000,
        "train.validation_size": 0,
    }
    assert noisy.pool_settings()["oracle"]["noise"] == 0.2
    assert biased.pool_settings()["initial_excluded_classes"] == 2
    assert describe(ideal.oracle) == "simulated"
    assert describe(noisy.oracle) == "simulated, 20% noise within dataset groups"


def test_excluded_classes_are_drawn_per_seed():
    first = excluded_initial_classes(10, 3, seed=0)
    assert len(first) == 3 and len(set(first.tolist())) == 3
    np.testing.assert_array_equal(first, excluded_initial_classes(10, 3, seed=0))
    draws = {tuple(excluded_initial_classes(10, 3, seed=s).tolist()) for s in range(10)}
    assert len(draws) > 1
    assert len(excluded_initial_classes(10, 0, seed=0)) == 0
    with pytest.raises(IndexFileError, match="leaves none of the 10 classes"):
        excluded_initial_classes(10, 10, seed=0)


# ------------------------------------------------------ through the stages, on real digits


def digits_experiment(**changes) -> ExperimentConfig:
    settings = {
        "dataset": "digits",
        "model": "digits_cnn",
        "methods": ["random"],
        "initial_size": 60,
        "budget": 30,
        "stages": 2,
        "subset_size": 0,
        "train": TrainConfig(epochs=1, batch_size=32, augment=False, milestones=()),
        **changes,
    }
    return ExperimentConfig(name="noisy", **settings)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    load_dataset("digits", root)
    return root


GROUPS = OracleConfig(noise=0.3, confusion="groups", groups=((3, 5, 8), (1, 7), (4, 9)))


def test_noisy_oracle_through_init_query_and_train(tmp_path, data_dir):
    exp = digits_experiment(oracle=GROUPS)
    dataset = load_dataset("digits", data_dir)
    y_test_before = np.array(dataset.y_test)
    stage0 = tmp_path / "stage0" / "labeled.parquet"
    run_init_pool(exp, 0, data_dir, stage0, log=lambda _: None)
    oracle = experiment_oracle(exp, dataset, 0)
    assert oracle.name == "simulated, 30% noise within groups groups"
    labeled = read_labeled(stage0, oracle.answers)
    assert labeled.metadata["oracle"] == oracle.name
    # What the file holds is what the oracle said, not the truth (read against the truth, the
    # same file is refused), and it is wrong only inside the confusion groups.
    np.testing.assert_array_equal(labeled.labels, oracle.answer(labeled.indices))
    truth = dataset.y_train[labeled.indices]
    wrong = labeled.labels != truth
    assert 0 < wrong.sum() < len(truth)
    group_of = confusion_groups(GROUPS, 10, (), "e")
    assert (group_of[labeled.labels[wrong]] == group_of[truth[wrong]]).all()
    with pytest.raises(IndexFileError, match="the oracle says"):
        read_labeled(stage0, dataset.y_train)

    stage1 = tmp_path / "random" / "stage1" / "labeled.parquet"
    run_query(
        exp,
        "random",
        0,
        0,
        stage0,
        None,
        data_dir,
        stage1,
        tmp_path / "scores.parquet",
        device="cpu",
        log=lambda _: None,
    )
    after = read_labeled(stage1, oracle.answers, 1)
    new = after.table[after.table["stage_added"] == 1]
    np.testing.assert_array_equal(new["label"], oracle.answer(new["index"].to_numpy()))
    assert after.metadata["oracle"] == oracle.name

    metrics = run_train(
        exp,
        PLAIN,
        0,
        1,
        stage1,
        data_dir,
        tmp_path / "model.pt",
        tmp_path / "metrics.json",
        method="random",
        device="cpu",
        log=lambda _: None,
    )
    # Test accuracy is measured on the true test labels, which nothing has touched.
    reloaded = load_experiment_dataset(exp, data_dir)
    np.testing.assert_array_equal(reloaded.y_test, y_test_before)
    model = load_task_models(tmp_path / "model.pt", exp, PLAIN, reloaded.info).models[0]
    logits = forward_pool(
        model, reloaded.x_test, np.arange(reloaded.info.n_test), reloaded.info, "cpu"
    ).logits
    assert metrics["accuracy"] == pytest.approx(float((logits.argmax(1) == y_test_before).mean()))


def test_biased_initial_pool_leaves_classes_out(tmp_path, data_dir):
    exp = digits_experiment(initial_excluded_classes=3)
    dataset = load_dataset("digits", data_dir)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    run_init_pool(exp, 1, data_dir, first, log=lambda _: None)
    run_init_pool(exp, 1, data_dir, second, log=lambda _: None)
    # One pool per (experiment, seed), byte-identical however often it is made: every method
    # starts from it.
    assert first.read_bytes() == second.read_bytes()
    labeled = read_labeled(first, dataset.y_train)
    left_out = excluded_initial_classes(10, 3, seed=1)
    assert labeled.metadata["excluded_classes"] == ",".join(map(str, left_out.tolist()))
    present = set(labeled.labels.tolist())
    assert not present & set(left_out.tolist())
    assert present == set(range(10)) - set(left_out.tolist())
    # The ideal oracle answers the truth; the metadata says who answered.
    assert labeled.metadata["oracle"] == "simulated"


def test_simulated_oracle_is_ideal_without_noise():
    y = true_labels(50)
    exp = ExperimentConfig(name="e", dataset="digits", model="digits_cnn")
    oracle = simulated_oracle(exp, y, 10, (), seed=0)
    np.testing.assert_array_equal(oracle.answer(np.arange(50)), y)
