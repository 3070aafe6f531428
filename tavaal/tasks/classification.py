"""Image and vector classification: one class per sample, accuracy on the test split."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tavaal.config import ExperimentConfig, TrainConfig
from tavaal.data import DatasetInfo, PreparedDataset, to_tensor_batch
from tavaal.errors import ConfigError
from tavaal.pool import oracle_labels
from tavaal.tasks.base import Task

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# torch and what needs it are imported where used (see `tavaal.tasks.base`).


def augment_raw(
    raw: Tensor,
    generator: torch.Generator,
    cfg: TrainConfig,
    share: tuple[int, int] | None = None,
) -> Tensor:
    """`train.augmentation` (when `train.augment`), then RandAugment (when
    `train.randaugment_ops`), of a uint8 (N, H, W, C) batch, drawn from `generator` (for the
    global batch the batch is a `share` of, `tavaal.augmentation.augment_images`)."""
    from tavaal.augmentation import augment_images, resized_crop_images
    from tavaal.randaugment import randaugment_images

    if cfg.augment and cfg.augmentation == "resized_crop":
        raw = resized_crop_images(
            raw, generator, cfg.crop_scale, cfg.crop_ratio, cfg.hflip, share=share
        )
    elif cfg.augment:
        raw = augment_images(raw, generator, cfg.crop_padding, cfg.hflip, share=share)
    if cfg.randaugment_ops:
        raw = randaugment_images(
            raw, generator, cfg.randaugment_ops, cfg.randaugment_magnitude, share=share
        )
    return raw


class ClassificationTask(Task):
    name = "classification"
    primary_metric = "accuracy"
    metric_label = "test accuracy"
    keeps_logits = True
    index_metadata: ClassVar[dict[str, str]] = {}

    def model_names(self) -> list[str]:
        from tavaal.models import list_task_models

        return list_task_models()

    def build_model(self, exp: ExperimentConfig, info: DatasetInfo) -> nn.Module:
        from tavaal.models import build_task_model

        return build_task_model(
            exp.model, info.input_shape, info.num_classes, dropout=exp.train.dropout
        )

    def check_experiment(self, exp: ExperimentConfig, where: str) -> None:
        if exp.train.crop_size:
            raise ConfigError(
                f"{where}.train.crop_size: the crop of segmentation images and masks; "
                f"{exp.dataset} is a classification dataset (train.augmentation and "
                "train.crop_padding crop its images)"
            )

    def label_table(self, y_train: np.ndarray) -> np.ndarray:
        return y_train

    def train_targets(
        self, dataset: PreparedDataset, indices: np.ndarray, labels: np.ndarray
    ) -> Tensor:
        import torch

        # What the oracle said, which may differ from y_train (a noisy oracle).
        return torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def augment(
        self,
        raw: Tensor,
        targets: Tensor,
        generator: torch.Generator,
        cfg: TrainConfig,
        info: DatasetInfo,
        share: tuple[int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        return to_tensor_batch(augment_raw(raw, generator, cfg, share), info), targets

    def per_sample_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(logits, targets, reduction="none")

    def batch_loss(self, logits: Tensor, targets: Tensor, per_sample: Tensor) -> Tensor:
        return per_sample.mean()

    def correct(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, int]:
        return (logits.argmax(1) == targets).sum(), len(targets)

    def evaluate(
        self, models: Sequence[nn.Module], dataset: PreparedDataset, device, batch_size: int
    ) -> dict:
        """Test-split accuracy, per-class accuracy and loss of the stage's predictor.

        The predictor of an ensemble is the mean of its members' softmax outputs (Beluch et
        al. 2018); each member's own accuracy is kept in `member_accuracies`.
        """
        import torch
        import torch.nn.functional as F

        from tavaal.inference import forward_pool

        info = dataset.info
        if len(dataset.y_test) == 0:
            # An image folder without test labels (`tavaal.data.image_folder`).
            return {
                "accuracy": None,
                "per_class_accuracy": [None] * info.num_classes,
                "test_loss": None,
            }
        test_indices = np.arange(len(dataset.y_test), dtype=np.int64)
        labels = torch.from_numpy(np.array(dataset.y_test, dtype=np.int64))
        # forward_pool runs without gradients.
        outputs = [
            forward_pool(model, dataset.x_test, test_indices, info, device, batch_size)
            for model in models
        ]
        probs = torch.stack([F.softmax(torch.from_numpy(o.logits), 1) for o in outputs]).mean(0)
        predictions = probs.argmax(1)
        if len(outputs) == 1:
            test_loss = F.cross_entropy(torch.from_numpy(outputs[0].logits), labels)
        else:
            test_loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)
        metrics = {
            "accuracy": float((predictions == labels).float().mean()),
            "per_class_accuracy": _per_class_accuracy(predictions, labels, info.num_classes),
            "test_loss": float(test_loss),
        }
        if len(outputs) > 1:
            metrics["member_accuracies"] = [
                float((torch.from_numpy(o.logits).argmax(1) == labels).float().mean())
                for o in outputs
            ]
        return metrics

    def label_histogram(
        self, dataset: PreparedDataset, indices: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        # What the oracle said, which may differ from y_train (a noisy oracle).
        k = dataset.info.num_classes
        return np.bincount(np.asarray(labels, dtype=np.int64), minlength=k)

    def score_logits(self, logits: Tensor) -> Tensor:
        return logits

    def score_rows(self, block: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        # A sample is one row: the whole (..., b, K) block at once.
        yield 0, block.shape[-2], block

    def sample_scores(self, values: np.ndarray, count: int) -> np.ndarray:
        return values

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
        from tavaal.inference import mc_dropout_batches

        return mc_dropout_batches(
            model, x, indices, info, device, samples, generator_seed, batch_size
        )

    def true_loss(
        self, model: nn.Module, dataset: PreparedDataset, indices: np.ndarray, device, batch_size
    ) -> np.ndarray:
        from tavaal.inference import forward_pool, per_sample_loss

        logits = forward_pool(model, dataset.x_train, indices, dataset.info, device, batch_size)
        return per_sample_loss(logits.logits, oracle_labels(dataset.y_train, indices))


def _per_class_accuracy(predictions, labels, num_classes: int) -> list[float | None]:
    result: list[float | None] = []
    for cls in range(num_classes):
        mask = labels == cls
        total = int(mask.sum())
        result.append(float((predictions[mask] == cls).float().mean()) if total else None)
    return [None if v is None or math.isnan(v) else round(v, 6) for v in result]
