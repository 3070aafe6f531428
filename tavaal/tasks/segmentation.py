"""Semantic segmentation: a mask per image (`tavaal.data.segmentation_sets`), a DRN task learner
(`tavaal.models.drn`), mean IoU on the test split (`tavaal.segmentation.metrics`).

The simulated oracle's answer for an image is its true mask: training reads the masks of the
labeled images from the dataset, and an index file's `label` column records each image's count
of labeled pixels (not 255), which `tavaal.pool.read_labeled` checks against the dataset, so an
index file written for other masks is caught. A noisy oracle is defined for class labels only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tavaal.config import ExperimentConfig, TrainConfig
from tavaal.data import IGNORE_INDEX, DatasetInfo, PreparedDataset, to_tensor_batch
from tavaal.errors import ConfigError
from tavaal.tasks.base import Task

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# torch and what needs it are imported where used (see `tavaal.tasks.base`).

# What an index file's `label` column holds: each image's count of labeled pixels.
LABELED_PIXELS = "labeled_pixels"

# Masks summed per chunk in `label_table`: a few MB of a memory-mapped split at a time.
_CHUNK = 64

# A query scores the logits average-pooled over SCORE_STRIDE x SCORE_STRIDE windows: DRN's
# logits are bilinear upsamplings of its stride-8 classifier's, so a window's mean is close to
# the classifier's own logit there, and the score rows of an image are 64 times fewer (a
# Cityscapes image at 1376x688 has 172 x 86 = 14,792 of them).
SCORE_STRIDE = 8
# Score rows of a batch are scored in groups of whole images of at most this many bytes as
# float64 (T passes x rows x K), so a query's memory does not grow with its inference batch.
SCORE_BLOCK_BYTES = 64 << 20


class SegmentationTask(Task):
    name = "segmentation"
    primary_metric = "miou"
    metric_label = "test mIoU"
    keeps_logits = False
    index_metadata: ClassVar[dict[str, str]] = {"label": LABELED_PIXELS}

    def model_names(self) -> list[str]:
        from tavaal.models.drn import list_segmentation_models

        return list_segmentation_models()

    def build_model(self, exp: ExperimentConfig, info: DatasetInfo) -> nn.Module:
        from tavaal.models.drn import build_segmentation_model

        return build_segmentation_model(
            exp.model, info.input_shape, info.num_classes, dropout=exp.train.dropout
        )

    def check_experiment(self, exp: ExperimentConfig, where: str) -> None:
        if exp.oracle.human:
            raise ConfigError(
                f"{where}.oracle.kind: a person labels class labels, not masks; segmentation "
                "experiments use the simulated oracle"
            )
        if exp.oracle.noise:
            raise ConfigError(
                f"{where}.oracle.noise: the noisy oracle swaps class labels; a segmentation "
                "oracle answers true masks (set it to 0)"
            )
        if exp.initial_excluded_classes:
            raise ConfigError(
                f"{where}.initial_excluded_classes: an image holds pixels of several classes, "
                "so no class can be left out of a segmentation pool (set it to 0)"
            )
        if exp.train.randaugment_ops:
            raise ConfigError(
                f"{where}.train.randaugment_ops: RandAugment's geometry would move the image "
                "but not its mask; segmentation trains with crop and flip only (set it to 0)"
            )

    def label_table(self, y_train: np.ndarray) -> np.ndarray:
        counts = np.empty(len(y_train), dtype=np.int64)
        for start in range(0, len(y_train), _CHUNK):
            masks = np.asarray(y_train[start : start + _CHUNK])
            counts[start : start + len(masks)] = (
                (masks != IGNORE_INDEX).reshape(len(masks), -1).sum(axis=1)
            )
        return counts

    def train_targets(
        self, dataset: PreparedDataset, indices: np.ndarray, labels: np.ndarray
    ) -> Tensor:
        import torch

        # uint8 masks (N, H, W): an eighth of int64's memory on the device; `long()` per batch.
        return torch.from_numpy(np.array(dataset.y_train[np.asarray(indices, dtype=np.int64)]))

    def augment(
        self,
        raw: Tensor,
        targets: Tensor,
        generator: torch.Generator,
        cfg: TrainConfig,
        info: DatasetInfo,
        share: tuple[int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Crops of `train.crop_size` (0: the whole image) and flips (`train.hflip`) of each
        image and its mask together. Normalised first, as `to_tensor_batch` checks the stored
        size: a crop reaching past the image fills it with 0, the dataset's mean colour, and
        its mask with 255, which no loss or metric counts. Trained by one process (`share` is
        always None: `tavaal.distributed.check_supported`)."""
        from tavaal.segmentation import crop_flip

        images = to_tensor_batch(raw, info)
        crop = cfg.crop_size or (int(images.shape[2]), int(images.shape[3]))
        return crop_flip(images, targets, crop, generator, hflip=cfg.hflip)

    def per_sample_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        from tavaal.segmentation import per_image_cross_entropy

        return per_image_cross_entropy(logits, targets)

    def batch_loss(self, logits: Tensor, targets: Tensor, per_sample: Tensor) -> Tensor:
        # The mean over the batch's labeled pixels (DRN's loss), not over images, so an image
        # counts by its labeled area: the per-image means weighted by their pixel counts.
        labeled = (targets != IGNORE_INDEX).flatten(1).sum(dim=1)
        return (per_sample * labeled).sum() / labeled.sum().clamp(min=1)

    def correct(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        labeled = targets != IGNORE_INDEX
        return ((logits.argmax(1) == targets) & labeled).sum(), labeled.sum()

    def evaluate(
        self, models: Sequence[nn.Module], dataset: PreparedDataset, device, batch_size: int
    ) -> dict:
        """mIoU, per-class IoU, pixel accuracy and mean pixel cross-entropy on the test split,
        from one confusion matrix summed batch by batch (no logits of the whole split are
        kept). An ensemble predicts with its members' mean softmax; `member_miou` holds each
        member's own mIoU."""
        import torch

        with torch.no_grad():
            return self._evaluate(models, dataset, device, batch_size)

    def _evaluate(
        self, models: Sequence[nn.Module], dataset: PreparedDataset, device, batch_size: int
    ) -> dict:
        import torch
        import torch.nn.functional as F

        from tavaal.inference import batches, load_inputs
        from tavaal.segmentation import ConfusionMatrix

        info = dataset.info
        k = info.num_classes
        if len(dataset.y_test) == 0:
            return {
                "metric": self.primary_metric,
                "miou": None,
                "per_class_iou": [None] * k,
                "pixel_accuracy": None,
                "test_loss": None,
            }
        for model in models:
            model.eval()
        predictor = ConfusionMatrix(k)
        members = [ConfusionMatrix(k) for _ in models] if len(models) > 1 else []
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for chunk in batches(np.arange(len(dataset.y_test), dtype=np.int64), batch_size):
            inputs = load_inputs(dataset.x_test, chunk, info, device)
            target = torch.from_numpy(np.array(dataset.y_test[chunk])).to(device).long()
            logits = [model(inputs).logits.float() for model in models]
            if len(logits) == 1:
                scores = logits[0]
                loss = F.cross_entropy(scores, target, ignore_index=IGNORE_INDEX, reduction="sum")
            else:
                scores = torch.stack([F.softmax(x, dim=1) for x in logits]).mean(0)
                log_probs = torch.log(scores.clamp_min(1e-12))
                loss = F.nll_loss(log_probs, target, ignore_index=IGNORE_INDEX, reduction="sum")
                for matrix, member_logits in zip(members, logits, strict=True):
                    matrix.update(member_logits, target)
            predictor.update(scores, target)
            loss_sum += loss.double()
        result = predictor.compute()
        metrics = {
            "metric": self.primary_metric,
            "miou": result.mean_iou,
            "per_class_iou": list(result.iou),
            "pixel_accuracy": result.pixel_accuracy,
            "test_loss": float(loss_sum) / result.pixels if result.pixels else None,
            "test_pixels": result.pixels,
            "confusion": [list(row) for row in result.confusion],
        }
        if members:
            metrics["member_miou"] = [matrix.compute().mean_iou for matrix in members]
        return metrics

    def label_histogram(
        self, dataset: PreparedDataset, indices: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """The labeled pixels' classes over the labeled images' masks (255 not counted), read
        a chunk of masks at a time in index order."""
        k = dataset.info.num_classes
        counts = np.zeros(k, dtype=np.int64)
        indices = np.sort(np.asarray(indices, dtype=np.int64))
        for start in range(0, len(indices), _CHUNK):
            masks = np.asarray(dataset.y_train[indices[start : start + _CHUNK]]).ravel()
            counts += np.bincount(masks[masks != IGNORE_INDEX], minlength=k)[:k]
        return counts

    def score_logits(self, logits: Tensor) -> Tensor:
        import torch.nn.functional as F

        # ceil_mode: a window cut by the image's edge is the mean of its pixels inside.
        return F.avg_pool2d(logits, SCORE_STRIDE, ceil_mode=True)

    def score_rows(self, block: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """Per group of images: their pooled pixels as rows, image after image (rows of one
        image are contiguous, so `sample_scores` averages each image's own)."""
        *lead, b, k, h, w = block.shape
        row_bytes = int(np.prod(lead, dtype=np.int64)) * h * w * k * 8
        group = max(1, SCORE_BLOCK_BYTES // max(row_bytes, 1))
        for lo in range(0, b, group):
            part = block[..., lo : lo + group, :, :, :]
            # (..., g, K, h, w) -> (..., g, h, w, K) -> (..., g*h*w, K)
            rows = np.moveaxis(part, -3, -1).reshape(*lead, -1, k)
            yield lo, lo + part.shape[-4], rows

    def sample_scores(self, values: np.ndarray, count: int) -> np.ndarray:
        """Each image's mean over its score rows (the mean pixel score of issue 11)."""
        return np.asarray(values, dtype=np.float64).reshape(count, -1).mean(axis=1)

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
        """As the classifiers' (`tavaal.inference.mc_dropout_batches`): the body runs once per
        batch in eval mode, then only DRN's head (dropout on the stride-8 features, the 1x1
        classifier, the upsampling) is sampled, with masks drawn batch by batch, pass by pass
        from one seeded generator."""
        import torch

        with torch.no_grad():
            yield from self._mc_dropout_batches(
                model, x, indices, info, device, samples, generator_seed, batch_size
            )

    def _mc_dropout_batches(
        self, model, x, indices, info, device, samples, generator_seed, batch_size
    ):
        import torch
        import torch.nn.functional as F

        from tavaal.inference import load_inputs, numbered_batches, sampled_dropout

        model.eval()
        generator = torch.Generator(device=device)
        generator.manual_seed(generator_seed)
        for start, chunk in numbered_batches(np.asarray(indices, dtype=np.int64), batch_size):
            inputs = load_inputs(x, chunk, info, device)
            size = tuple(inputs.shape[-2:])
            features, _ = model.forward_features(inputs)
            logits = self.score_logits(model.logits_from_features(features, size)).float()
            passes = []
            for _ in range(samples):
                dropped = sampled_dropout(features, model.dropout.p, generator)
                scores = self.score_logits(model.logits_from_features(dropped, size))
                passes.append(F.softmax(scores.float(), dim=1).cpu())
            yield start, start + len(chunk), torch.stack(passes).numpy(), logits.cpu().numpy()

    def true_loss(
        self, model: nn.Module, dataset: PreparedDataset, indices: np.ndarray, device, batch_size
    ) -> np.ndarray:
        """Each image's mean pixel cross-entropy against its true mask, batch by batch: only
        one batch's (b, K, H, W) logits exist at a time."""
        import torch

        from tavaal.inference import batches, load_inputs
        from tavaal.segmentation import per_image_cross_entropy

        indices = np.asarray(indices, dtype=np.int64)
        losses = np.empty(len(indices), dtype=np.float32)
        model.eval()
        with torch.no_grad():
            start = 0
            for chunk in batches(indices, batch_size):
                inputs = load_inputs(dataset.x_train, chunk, dataset.info, device)
                masks = torch.from_numpy(np.array(dataset.y_train[chunk])).to(device)
                loss = per_image_cross_entropy(model(inputs).logits, masks)
                losses[start : start + len(chunk)] = loss.cpu().numpy()
                start += len(chunk)
        return losses
