"""Semantic segmentation pieces: metrics (confusion matrix, IoU, per-image scores) and the joint
image + mask augmentation. Only torch is imported."""

from tavaal.segmentation.augmentation import crop_flip
from tavaal.segmentation.metrics import (
    IGNORE_INDEX,
    ConfusionMatrix,
    SegmentationScores,
    confusion_matrix,
    mean_pixel_entropy,
    per_image_cross_entropy,
)

__all__ = [
    "IGNORE_INDEX",
    "ConfusionMatrix",
    "SegmentationScores",
    "confusion_matrix",
    "crop_flip",
    "mean_pixel_entropy",
    "per_image_cross_entropy",
]
