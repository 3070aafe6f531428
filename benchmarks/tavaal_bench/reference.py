"""The data path of the official VAAL / TA-VAAL code: a DataLoader over a Dataset that, like
torchvision.datasets.CIFAR10, turns each uint8 image into a PIL image and applies per-sample
torchvision transforms."""

from __future__ import annotations

import numpy as np
import torch

from tavaal.config import ExperimentConfig
from tavaal.data import PreparedDataset

from .settings import Profile


class PILImageDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: uint8 array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        image = self.images[index]
        # Single-channel images become mode "L", as torchvision's MNIST does.
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        return self.transform(pil), int(self.labels[index])


def reference_transform(profile: Profile, exp: ExperimentConfig):
    import torchvision.transforms as T

    _, h, _ = profile.input_shape
    # The official TA-VAAL CIFAR train transform (VAAL's code: ToTensor + Normalize only).
    return T.Compose(
        [
            T.RandomCrop(h, padding=exp.train.crop_padding),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(profile.mean, profile.std),
        ]
    )


def reference_dataset(
    dataset: PreparedDataset, profile: Profile, exp: ExperimentConfig
) -> PILImageDataset:
    """The train split as the official codes read it: PIL images through the train transform."""
    return PILImageDataset(
        np.asarray(dataset.x_train), np.asarray(dataset.y_train), reference_transform(profile, exp)
    )


def reference_loader(data, indices, batch_size: int, workers: int, device: torch.device):
    """As both official codes: SubsetRandomSampler over the labeled indices, drop_last, and
    (TA-VAAL) pin_memory; num_workers is not set there, i.e. 0."""
    return torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        sampler=torch.utils.data.SubsetRandomSampler(list(indices)),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
