"""Oracles: who labels the samples a query picks.

One interface, `Oracle`: `answer(indices)` gives the labels it says for train-split indices and
`name` says who answered (recorded in every `labeled.parquet`). The simulated oracle answers from
a table fixed per (experiment, seed): the dataset's true labels (the ideal oracle) or, with
`oracle.noise` > 0, a noisy oracle (VAAL §3.3, §5.2) that labels a fixed fraction of the train
split with another class of the same confusion group. What it says is what the task learner
trains on; the true labels stay in the dataset for analysis, and test accuracy is always measured
on the true test labels.

Noise draw, for reproducibility and for paired comparisons across noise levels: one seeded
permutation of the train split's confusable samples (their class has another class in its
group) and one seeded wrong class per sample; noise f corrupts the first round(f * N) samples of
that permutation, N the train split size. So for one seed the samples mislabeled at 10% are
among those at 20%, with the same wrong labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from tavaal.config import ExperimentConfig, OracleConfig
from tavaal.errors import ConfigError, LabelingError
from tavaal.seeding import numpy_rng

IDEAL = "simulated"
HUMAN = "human"


class Oracle(ABC):
    """Answers label requests for train-split indices."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Who answered, as recorded in the metadata of the index files."""

    @abstractmethod
    def answer(self, indices: np.ndarray) -> np.ndarray:
        """The label said for each index (int64, same order)."""


@dataclass(frozen=True)
class SimulatedOracle(Oracle):
    """Answers from a table with one label per train-split sample."""

    answers: np.ndarray
    description: str = IDEAL

    @property
    def name(self) -> str:
        return self.description

    def answer(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.answers[np.asarray(indices, dtype=np.int64)], dtype=np.int64)


@dataclass(frozen=True)
class HumanOracle(Oracle):
    """Answers from the labels files a person filled (`tavaal.label_requests`): sample id ->
    class index, and where the answers came from (named when one is missing)."""

    labels: dict[int, int]
    source: str

    @property
    def name(self) -> str:
        return HUMAN

    def answer(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        unanswered = [int(i) for i in indices if int(i) not in self.labels]
        if unanswered:
            raise LabelingError(
                f"{self.source}: sample {unanswered[0]} has no label ({len(unanswered)} unanswered)"
            )
        return np.array([self.labels[int(i)] for i in indices], dtype=np.int64)


def confusion_groups(
    oracle: OracleConfig, num_classes: int, dataset_groups: tuple[int, ...], where: str
) -> np.ndarray:
    """The confusion group of each class (int64, one per class) for `oracle.confusion`.

    Classes that no group lists get a group of their own (a labeler never confuses them).
    """
    if oracle.confusion == "any":
        return np.zeros(num_classes, dtype=np.int64)
    if oracle.confusion == "dataset":
        if not dataset_groups:
            raise ConfigError(
                f"{where}.oracle.confusion: the dataset defines no class groups (CIFAR-100's "
                "super-classes do); use confusion 'groups' with explicit groups, or 'any'"
            )
        return np.asarray(dataset_groups, dtype=np.int64)
    group_of = np.arange(len(oracle.groups), len(oracle.groups) + num_classes, dtype=np.int64)
    for g, members in enumerate(oracle.groups):
        for cls in members:
            if cls >= num_classes:
                raise ConfigError(
                    f"{where}.oracle.groups[{g}]: class {cls} does not exist "
                    f"(the dataset has classes 0..{num_classes - 1})"
                )
            group_of[cls] = g
    return group_of


def noisy_answers(
    y_true: np.ndarray, noise: float, group_of: np.ndarray, seed: int, where: str = "oracle"
) -> np.ndarray:
    """The noisy oracle's label for every train sample (see the module doc for the draw)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    wanted = round(noise * n)
    group_sizes = np.bincount(group_of)
    confusable = np.flatnonzero(group_sizes[group_of[y_true]] > 1)
    if wanted > len(confusable):
        raise ConfigError(
            f"{where}.oracle.noise: {noise} asks for {wanted} wrong labels but only "
            f"{len(confusable)} of {n} samples have a class with another class in its group"
        )
    order = numpy_rng(seed, None, "oracle/noise/order").permutation(confusable)
    # One wrong class per confusable sample, drawn for all of them so that the choice for a
    # sample does not depend on the noise level.
    offsets = numpy_rng(seed, None, "oracle/noise/class").random(len(order))
    answers = y_true.copy()
    members = {g: np.flatnonzero(group_of == g) for g in np.unique(group_of)}
    for position, index in enumerate(order[:wanted]):
        true = y_true[index]
        others = members[group_of[true]]
        others = others[others != true]
        answers[index] = others[int(offsets[position] * len(others))]
    return answers


def describe(oracle: OracleConfig) -> str:
    """The oracle's name in index files: "simulated", "human", or e.g. "simulated, 20% noise
    within dataset groups"."""
    if oracle.human:
        return HUMAN
    if oracle.ideal:
        return IDEAL
    return f"{IDEAL}, {100 * oracle.noise:g}% noise within {oracle.confusion} groups"


def simulated_oracle(
    exp: ExperimentConfig,
    y_train: np.ndarray,
    num_classes: int,
    dataset_groups: tuple[int, ...],
    seed: int,
) -> SimulatedOracle:
    """The experiment's simulated oracle for `seed` (ideal when `oracle.noise` is 0)."""
    y_train = np.asarray(y_train, dtype=np.int64)
    if exp.oracle.ideal:
        return SimulatedOracle(y_train, IDEAL)
    where = f"experiments.{exp.name}"
    group_of = confusion_groups(exp.oracle, num_classes, dataset_groups, where)
    answers = noisy_answers(y_train, exp.oracle.noise, group_of, seed, where)
    return SimulatedOracle(answers, describe(exp.oracle))
