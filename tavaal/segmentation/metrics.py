"""Segmentation metrics and per-image scores, in torch on the logits' device.

- `confusion_matrix` / `ConfusionMatrix`: an int64 (K, K) matrix, rows the true class and columns
  the predicted one, over the pixels whose target is not `ignore_index` (255, the label of
  Cityscapes' and BDD100K's unlabeled pixels). `ConfusionMatrix` sums it over batches.
- `SegmentationScores`: per-class IoU ``TP / (TP + FP + FN)``, mean IoU and pixel accuracy from
  a confusion matrix. A class that appears neither in the predictions nor in the targets (zero
  union) has no IoU: None, not 0 or NaN, and it is left out of the mean, as the Cityscapes
  evaluation averages over the classes with a defined IoU. A class that is in the targets but
  never predicted has IoU 0, and so has one that is predicted but absent from the targets.
- `per_image_cross_entropy`: each image's mean pixel cross-entropy over its labeled pixels: the
  per-image "loss" the ranker / loss-prediction module learns to predict on segmentation.
- `mean_pixel_entropy`: each image's mean over pixels of the predictive entropy, at full
  resolution. No query calls it: the queries score the pooled logits' rows
  (`tavaal.tasks.segmentation.SegmentationTask.score_logits`), so the entropy method's score is
  this mean over the pooled grid, not over the pixels. It is a per-image summary of a
  prediction for library users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255


def predictions(logits_or_pred: Tensor, target: Tensor) -> Tensor:
    """Class indices (N, H, W) from logits (N, K, H, W) (argmax over K) or from indices."""
    if logits_or_pred.is_floating_point():
        if logits_or_pred.dim() != target.dim() + 1:
            raise ValueError(
                f"logits of shape {tuple(logits_or_pred.shape)} do not match targets of shape "
                f"{tuple(target.shape)}: expected (N, K, H, W) and (N, H, W)"
            )
        return logits_or_pred.argmax(dim=1)
    return logits_or_pred


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """int64 (K, K) counts of (true class, predicted class) pairs over the pixels whose target
    is not `ignore_index`; `pred` holds class indices or (N, K, ...) logits. On their device.

    A target outside [0, K) other than `ignore_index`, or a prediction outside [0, K) on a
    labeled pixel, is a ValueError (it would otherwise be counted in another class's cell).
    """
    pred = predictions(pred, target)
    if pred.shape != target.shape:
        raise ValueError(
            f"predictions of shape {tuple(pred.shape)} and targets of shape "
            f"{tuple(target.shape)} differ"
        )
    labeled = target != ignore_index
    true = target[labeled].long()
    predicted = pred[labeled].long()
    bad = (true < 0) | (true >= num_classes) | (predicted < 0) | (predicted >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"class indices must lie in [0, {num_classes}) or be {ignore_index} (targets only); "
            f"got targets in [{int(true.min())}, {int(true.max())}], predictions in "
            f"[{int(predicted.min())}, {int(predicted.max())}]"
        )
    counts = torch.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


class ConfusionMatrix:
    """A confusion matrix summed over batches, on the device of the first batch."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix: Tensor | None = None

    def update(self, logits_or_pred: Tensor, target: Tensor) -> None:
        batch = confusion_matrix(logits_or_pred, target, self.num_classes, self.ignore_index)
        self.matrix = batch if self.matrix is None else self.matrix + batch.to(self.matrix.device)

    def compute(self) -> SegmentationScores:
        """Scores of all pixels seen so far (no pixel yet: every score is None)."""
        matrix = self.matrix
        if matrix is None:
            matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64)
        return SegmentationScores.from_confusion(matrix)


@dataclass(frozen=True)
class SegmentationScores:
    """IoU per class (None: the class is in neither predictions nor targets), their mean over
    the defined ones, and the fraction of labeled pixels predicted right. `mean_iou` and
    `pixel_accuracy` are None when no labeled pixel was seen."""

    iou: tuple[float | None, ...]
    mean_iou: float | None
    pixel_accuracy: float | None
    pixels: int  # labeled pixels counted
    confusion: tuple[tuple[int, ...], ...]  # rows: true class, columns: predicted class

    @classmethod
    def from_confusion(cls, matrix: Tensor) -> SegmentationScores:
        counts = matrix.detach().to(device="cpu", dtype=torch.int64)
        if counts.dim() != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"a confusion matrix is square, got shape {tuple(counts.shape)}")
        # Exact integer counts; one division per class in float64.
        tp = counts.diagonal()
        union = counts.sum(dim=0) + counts.sum(dim=1) - tp
        iou = tuple(
            None if int(u) == 0 else int(t) / int(u) for t, u in zip(tp, union, strict=True)
        )
        defined = [value for value in iou if value is not None]
        pixels = int(counts.sum())
        return cls(
            iou=iou,
            mean_iou=math.fsum(defined) / len(defined) if defined else None,
            pixel_accuracy=int(tp.sum()) / pixels if pixels else None,
            pixels=pixels,
            confusion=tuple(tuple(int(c) for c in row) for row in counts),
        )

    def to_dict(self, class_names: list[str] | None = None) -> dict:
        """JSON-safe record for metrics.json: plain floats, ints and None (never NaN)."""
        if class_names is not None and len(class_names) != len(self.iou):
            raise ValueError(f"{len(class_names)} class names for {len(self.iou)} classes")
        record = {
            "mean_iou": self.mean_iou,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class_iou": list(self.iou),
            "pixels": self.pixels,
            "confusion": [list(row) for row in self.confusion],
        }
        if class_names is not None:
            record["class_names"] = list(class_names)
        return record


def per_image_cross_entropy(
    logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """(N,) float32: each image's cross-entropy averaged over its pixels whose target is not
    `ignore_index`; 0 for an image without any labeled pixel (nothing to learn from it)."""
    loss = F.cross_entropy(
        logits.float(), target.long(), ignore_index=ignore_index, reduction="none"
    )  # (N, H, W), 0 at ignored pixels
    labeled = (target != ignore_index).flatten(1).sum(dim=1)
    return loss.flatten(1).sum(dim=1) / labeled.clamp(min=1)


def mean_pixel_entropy(logits: Tensor) -> Tensor:
    """(N,) float32: each image's mean over its pixels of ``-sum_k p_k log p_k`` (nats), p the
    softmax of the (N, K, H, W) logits over K, at full resolution. Not the entropy query's
    score, which averages the entropy of the pooled logits' rows (module docstring)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)  # (N, H, W)
    return entropy.flatten(1).mean(dim=1)
