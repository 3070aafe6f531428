"""Tensors that the official-code golden generator and the equality tests both compute.

Neither side may depend on a random generator of the other's library version, so initial weights,
images and probes come from a Weyl sequence: u_i = frac(i * (sqrt(5) - 1) / 2 + phase(key)),
evaluated in float64 with correctly rounded IEEE operations only, hence the same on every machine.
A tensor is summarised by (sum, L2 norm, dot product with a probe tensor of the same shape): three
numbers that change with any changed element, small enough to commit for a 22M-parameter VAE.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

_STEP = (math.sqrt(5.0) - 1.0) / 2.0


def uniform(key: str, shape) -> torch.Tensor:
    """float64 values in [-1, 1) of the given shape, a function of `key` and the shape only."""
    count = math.prod(shape)
    phase = zlib.crc32(key.encode()) / 2.0**32
    fraction = np.modf(np.arange(count, dtype=np.float64) * _STEP + phase)[0]
    return torch.from_numpy(2.0 * fraction - 1.0).reshape(tuple(shape))


def parameter_value(name: str, shape) -> torch.Tensor:
    """The initial value of the parameter `name` (official module's name) of `shape`: weights of
    Kaiming-uniform scale, batch-norm scales around 1, biases and shifts around 0."""
    values = uniform("init/" + name, shape)
    if len(shape) > 1:
        fan_in = math.prod(shape[1:])
        return values * math.sqrt(6.0 / fan_in)
    if name.endswith("weight"):  # a batch-norm scale
        return 1.0 + 0.1 * values
    return 0.1 * values


def summary(name: str, tensor: torch.Tensor) -> list[float]:
    """(sum, L2 norm, dot with the probe of `name`) of a tensor in the official layout."""
    t = tensor.detach().to(torch.float64).cpu()
    probe = uniform("probe/" + name, tuple(t.shape))
    return [float(t.sum()), float(t.norm()), float((t * probe).sum())]
