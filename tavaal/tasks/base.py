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
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tavaal.config import ExperimentConfig, TrainConfig
from tavaal.data import DatasetInfo, PreparedDataset

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class Task(ABC):
    """One kind of prediction: its models, targets, losses and metrics."""

    name: ClassVar[str]  # DatasetInfo.task of the datasets it serves
    primary_metric: ClassVar[str]  # the metrics.json key of the headline test score
    metric_label: ClassVar[str]  # that score in words ("test accuracy")

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
    ) -> tuple[Tensor, Tensor]:
        """`train.augmentation` of a uint8 (N, H, W, C) image batch and its targets, drawn
        from `generator`: (normalised float (N, C, h, w) inputs, their targets)."""

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
    def label_entropy(self, dataset: PreparedDataset, indices: np.ndarray, labels) -> float:
        """Entropy (natural log) of the class histogram of a labeled set (TA-VAAL Fig. 7a)."""
