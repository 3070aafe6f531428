"""Task learners, the Ranker (loss-prediction module), and VAAL's VAE and discriminator.

Importing this package registers every task learner; only torch is imported.
"""

from tavaal.models import resnet, small, vgg  # noqa: F401  (registers the task learners)
from tavaal.models.base import TaskModel, TaskOutput, build_task_model, list_task_models
from tavaal.models.ranker import LinearRanker, LossPredictionModule, build_ranker
from tavaal.models.vae import (
    VAE,
    Discriminator,
    PixelDiscriminator,
    build_discriminator,
    build_vae,
)

__all__ = [
    "VAE",
    "Discriminator",
    "LinearRanker",
    "LossPredictionModule",
    "TaskModel",
    "TaskOutput",
    "PixelDiscriminator",
    "build_discriminator",
    "build_ranker",
    "build_task_model",
    "build_vae",
    "list_task_models",
]
