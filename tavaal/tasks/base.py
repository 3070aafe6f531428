"""What a kind of task (classification, semantic segmentation) decides for training and testing.

Training (`tavaal.training`) is one loop for every task: it asks the dataset's `Task` for the
model, the training targets of a labeled set, the augmentation of a batch, the losses, the
training accuracy and the test metrics, and never looks at the task itself.

Importing the tasks loads no torch: a job that only labels (the initial pool, `tavaal.stage`)
asks its dataset's task what an index file records, and stays as light as before; the methods
that compute import torch when they run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tavaal.config import ExperimentConfig, TrainConfig
from tavaal.data import DatasetInfo, PreparedDataset, class_count_entropy

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class Task(ABC):
    """One kind of prediction: its models, targets, losses and metrics."""

    name: ClassVar[str]  # DatasetInfo.task of the datasets it serves
    primary_metric: ClassVar[str]  # the metrics.json key of the headline test score
    metric_label: ClassVar[str]  # that score in words ("test accuracy")
    # A query keeps the candidates' eval-mode logits for the stage runner's true loss (an
    # (N, K) array); a segmentation pool's (N, K, H, W) logits are never kept (`true_loss`).
    keeps_logits: ClassVar[bool]
    # Added to the metadata of every index file of an experiment: what its `label` column
    # holds where that is not a class label (`tavaal inspect` reads it).
    index_metadata: ClassVar[dict[str, str]]

    @abstractmethod
    def model_names(self) -> list[str]:
        """The registered task learners of this task (`experiments.<name>.model`)."""

    @abstractmethod
    def build_model(self, exp: ExperimentConfig, info: DatasetInfo) -> nn.Module:
        """The experiment's task learner, untrained, with `train.dropout`."""

    @abstractmethod
    def check_experiment(self, exp: ExperimentConfig, where: str) -> None:
        """ConfigError naming the key of a setting this task cannot honour."""

    @abstractmethod
    def label_table(self, y_train: np.ndarray) -> np.ndarray:
        """int64 (N,): what a labeled index file records, and is checked against, for each
        train sample (`tavaal.pool`'s `label` column) when the oracle answers truly."""

    @abstractmethod
    def train_targets(
        self, dataset: PreparedDataset, indices: np.ndarray, labels: np.ndarray
    ) -> Tensor:
        """The training targets of the labeled samples `indices` (in that order) whose index
        file records `labels`, on the CPU."""

    @abstractmethod
    def augment(
        self,
        raw: Tensor,
        targets: Tensor,
        generator: torch.Generator,
        cfg: TrainConfig,
        info: DatasetInfo,
        share: tuple[int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`train.augmentation` of a uint8 (N, H, W, C) image batch and its targets, drawn
        from `generator`: (normalised float (N, C, h, w) inputs, their targets). `share` =
        (start, total): the batch is rows start.. of a global batch of `total` whose draws it
        takes (data-parallel training, `tavaal.distributed`)."""

    @abstractmethod
    def per_sample_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """(N,) loss of each sample: what the ranker / loss-prediction module learns to rank."""

    @abstractmethod
    def batch_loss(self, logits: Tensor, targets: Tensor, per_sample: Tensor) -> Tensor:
        """The training loss of a batch, given its `per_sample_loss`."""

    @abstractmethod
    def correct(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | int]:
        """(right predictions, predictions scored) of a batch, for the training accuracy and
        the validation score; the counts stay on the device."""

    @abstractmethod
    def evaluate(
        self, models: Sequence[nn.Module], dataset: PreparedDataset, device, batch_size: int
    ) -> dict:
        """Test-split metrics of the predictor (an ensemble's: its mean softmax), JSON-safe,
        with `primary_metric` among them (None when the test split has no labels)."""

    @abstractmethod
    def label_histogram(
        self, dataset: PreparedDataset, indices: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """int64 (K,): the classes a labeled set holds, the samples `indices` whose index file
        records `labels`: one count per sample for its label (classification), one per labeled
        pixel of its mask (segmentation)."""

    def label_entropy(self, dataset: PreparedDataset, indices: np.ndarray, labels) -> float:
        """Entropy (natural log) of the class histogram of a labeled set (TA-VAAL Fig. 7a)."""
        return class_count_entropy(self.label_histogram(dataset, indices, labels))

    # What a query scores (`tavaal.strategies._common`): the uncertainty scores of a sample are
    # computed on "score rows", softmax rows of K classes (one per sample in classification, one
    # per pixel of a pooled grid in segmentation), by the per-row functions of
    # `tavaal.uncertainty`, then reduced to one score per sample.

    @abstractmethod
    def score_logits(self, logits: Tensor) -> Tensor:
        """On the device: the part of a batch's logits a query scores, (b, K, ...)."""

    @abstractmethod
    def score_rows(self, block: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """A batch's block of `score_logits` values (or their softmax), (..., b, K, ...) with
        any leading axes (passes, members), as ``(lo, hi, rows)`` per group of its samples
        lo:hi: rows (..., r, K), the score rows of those samples, sample by sample."""

    @abstractmethod
    def sample_scores(self, values: np.ndarray, count: int) -> np.ndarray:
        """(count,) float64 scores of `count` samples from the (r,) values of their score rows
        (the groups of `score_rows`)."""

    @abstractmethod
    def mc_dropout_batches(
        self,
        model: nn.Module,
        x: np.ndarray,
        indices: np.ndarray,
        info: DatasetInfo,
        device,
        samples: int,
        generator_seed: int,
        batch_size: int,
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Per inference batch, in order: ``(start, stop, probabilities (T, b, K, ...) float32,
        logits (b, K, ...) float32)``: the softmax of `samples` passes sampling the model's head
        dropout (masks from a generator seeded with `generator_seed`) and the eval-mode logits,
        both of `score_logits`."""

    @abstractmethod
    def true_loss(
        self, model: nn.Module, dataset: PreparedDataset, indices: np.ndarray, device, batch_size
    ) -> np.ndarray:
        """(N,) float32: `per_sample_loss` of the train samples `indices` against their true
        labels, in eval mode, batch by batch (the stage runner's `true_loss` column)."""
