"""Turning stored samples into normalised float tensors for the networks."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from tavaal.data.registry import DatasetInfo, PreparedDataset
from tavaal.errors import ConfigError

if TYPE_CHECKING:
    import torch


def to_tensor_batch(x: torch.Tensor | np.ndarray, info: DatasetInfo) -> torch.Tensor:
    """Normalised float32 batch on the device of `x`.

    Images: uint8 (N, H, W, C) -> (N, C, H, W), scaled by 1/255, minus the per-channel mean,
    divided by the per-channel std. Vectors: (N, D) -> (x - mean) / std per feature. Statistics
    come from `info` (computed on the train split). Moving the uint8 batch to the GPU before
    calling this keeps the host-to-device copy four times smaller.
    """
    import torch

    if isinstance(x, np.ndarray):
        # Slices of the read-only memory maps must be copied before torch may wrap them.
        x = torch.from_numpy(np.array(x) if not x.flags.writeable else x)
    if info.kind == "image":
        c, h, w = info.input_shape
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (h, w, c):
            raise ValueError(
                f"{info.name}: expected uint8 images of shape (N, {h}, {w}, {c}), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        # contiguous_format: plain NCHW strides rather than a channels-last view of the input.
        out = x.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        out = out.div_(255.0)
        shape = (1, c, 1, 1)
    else:
        (d,) = info.input_shape
        if not x.dtype.is_floating_point or x.ndim != 2 or x.shape[1] != d:
            raise ValueError(
                f"{info.name}: expected float vectors of shape (N, {d}), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        out = x.to(torch.float32, copy=True)
        shape = (1, d)
    mean = torch.tensor(info.mean, dtype=torch.float32, device=out.device).view(shape)
    std = torch.tensor(info.std, dtype=torch.float32, device=out.device).view(shape)
    return out.sub_(mean).div_(std)


def with_normalization(dataset: PreparedDataset, mode: str) -> PreparedDataset:
    """The dataset with the input scaling an experiment asks for (`normalization`).

    "dataset": the per-channel (per-feature) mean and std of the train split, as prepared;
    "half": mean = std = 0.5 per channel, i.e. images on [-1, 1] (VAAL's official code).
    """
    if mode == "dataset":
        return dataset
    if mode != "half":
        raise ConfigError(f"normalization: unknown mode {mode!r}; known: dataset, half")
    info = dataset.info
    if info.kind != "image":
        raise ConfigError(f"normalization: 'half' is for images; {info.name} holds vectors")
    channels = info.input_shape[0]
    half = (0.5,) * channels
    return dataclasses.replace(dataset, info=dataclasses.replace(info, mean=half, std=half))
