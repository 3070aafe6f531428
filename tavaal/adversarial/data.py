"""What the adversary trains on: the inputs of labeled + training pool on the device, which rows
are labeled, TA-VAAL's rank conditions, and the seeded epoch-style batch stream."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tavaal.data import to_tensor_batch
from tavaal.inference import batches, load_inputs
from tavaal.seeding import torch_generator

if TYPE_CHECKING:
    from tavaal.data import DatasetInfo

# Keep the normalised float inputs of the query on the device up to this size; above it keep the
# raw (uint8 for images, 4x smaller) rows there and normalise each batch on the fly.
DEFAULT_MAX_CACHED_BYTES = 2 * 1024**3
# Rows gathered (and normalised or resized) at a time while the bank is loaded: at most
# BANK_CHUNK, and at most BANK_CHUNK_BYTES of them as float32 on the device (`bank_chunk_rows`):
# 4,096 Cityscapes images of 1376x688 would be 11.6 GB of uint8 on the host and 46 GB of float32
# on the device, so they are gathered 47 at a time (CIFAR-sized rows keep the 4,096).
BANK_CHUNK = 4096
BANK_CHUNK_BYTES = 512 * 1024**2


def bank_chunk_rows(input_shape: tuple[int, ...], chunk: int = BANK_CHUNK) -> int:
    """Rows of `input_shape` (as stored) that `InputBank.load` gathers at a time."""
    return max(1, min(chunk, BANK_CHUNK_BYTES // (4 * math.prod(input_shape))))


class InputBank:
    """The normalised inputs of one query's training set (labeled + pool), on the device.

    Rows are addressed by position. Normalisation is that of the task learner
    (`tavaal.data.to_tensor_batch`, through `tavaal.inference.load_inputs`).
    """

    def __init__(
        self, normalised: Tensor | None = None, raw: Tensor | None = None, info=None
    ) -> None:
        if (normalised is None) == (raw is None):
            raise ValueError("InputBank needs exactly one of normalised or raw rows")
        self.normalised = normalised
        self.raw = raw
        self.info = info

    @classmethod
    def from_tensor(cls, x: Tensor) -> InputBank:
        """A bank over already normalised rows (N, ...)."""
        return cls(normalised=x.float())

    @classmethod
    def load(
        cls,
        x: np.ndarray,
        indices: np.ndarray,
        info: DatasetInfo,
        device,
        max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
        chunk: int = BANK_CHUNK,
        size: int = 0,
    ) -> InputBank:
        """The rows `indices` of `x`; images resized to `size` x `size` first when `size` is
        set and differs from the stored size (`vae.input_size`)."""
        indices = np.asarray(indices, dtype=np.int64)
        stored = info
        chunk = bank_chunk_rows(stored.input_shape, chunk)
        if size and info.kind == "image" and tuple(info.input_shape[1:]) != (size, size):
            info = dataclasses.replace(info, input_shape=(info.input_shape[0], size, size))
        per_row = 4 * math.prod(info.input_shape)
        resize = info is not stored
        if len(indices) * per_row <= max_cached_bytes:
            if resize:
                parts = [
                    to_tensor_batch(_resized_rows(x, part, size, device), info)
                    for part in batches(indices, chunk)
                ]
            else:
                parts = [load_inputs(x, part, info, device) for part in batches(indices, chunk)]
            if not parts:
                return cls(normalised=torch.zeros((0, *info.input_shape), device=device))
            return cls(normalised=torch.cat(parts))
        if resize:
            parts = [_resized_rows(x, part, size, device) for part in batches(indices, chunk)]
            return cls(raw=torch.cat(parts), info=info)
        order = np.argsort(indices, kind="stable")
        rows = np.empty((len(indices), *x.shape[1:]), dtype=x.dtype)
        rows[order] = np.asarray(x[indices[order]])
        return cls(raw=torch.from_numpy(rows).to(device), info=info)

    def __len__(self) -> int:
        return len(self.normalised if self.normalised is not None else self.raw)

    @property
    def device(self) -> torch.device:
        return (self.normalised if self.normalised is not None else self.raw).device

    def __getitem__(self, positions: Tensor) -> Tensor:
        if self.normalised is not None:
            return self.normalised[positions]
        return to_tensor_batch(self.raw[positions], self.info)


def _resized_rows(x: np.ndarray, indices: np.ndarray, size: int, device) -> Tensor:
    """uint8 (N, size, size, C) rows of the uint8 images `x[indices]`, in the order of `indices`:
    bilinear with antialiasing (an area-like average when shrinking), rounded back to uint8."""
    order = np.argsort(indices, kind="stable")
    rows = np.empty((len(indices), *x.shape[1:]), dtype=np.uint8)
    rows[order] = np.asarray(x[indices[order]])
    images = torch.from_numpy(rows).to(device).permute(0, 3, 1, 2).float()
    small = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    return small.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@dataclass
class AdversarialData:
    """What the adversary trains on: bank positions of L and U, and the TA-VAAL conditions.

    `decoder_r` / `disc_r`: per bank row, float (N,), both or neither (VAAL).
    `indices`: the dataset index of each bank row (only used to fingerprint checkpoints).
    """

    bank: InputBank
    labeled: np.ndarray
    unlabeled: np.ndarray
    decoder_r: np.ndarray | None = None
    disc_r: np.ndarray | None = None
    indices: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labeled = np.asarray(self.labeled, dtype=np.int64)
        self.unlabeled = np.asarray(self.unlabeled, dtype=np.int64)
        if (self.decoder_r is None) != (self.disc_r is None):
            raise ValueError("decoder_r and disc_r must be given together (TA-VAAL) or not at all")
        if len(self.labeled) == 0 or len(self.unlabeled) == 0:
            raise ValueError(
                f"the adversary needs labeled and unlabeled points, got {len(self.labeled)} "
                f"and {len(self.unlabeled)}"
            )
        for name in ("decoder_r", "disc_r"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float32).reshape(-1)
                if len(value) != len(self.bank):
                    raise ValueError(f"{name} has {len(value)} values for {len(self.bank)} rows")
                setattr(self, name, value)

    @property
    def conditional(self) -> bool:
        return self.decoder_r is not None


class BatchCycler:
    """Epoch-style batches over `n` items: the stream of per-epoch seeded permutations.

    Draw k is items [k*B, (k+1)*B) of that stream, a function of (seed, stage, role, k) only.
    """

    def __init__(self, n: int, batch_size: int, seed: int, stage: int, role: str) -> None:
        self.n, self.batch_size = n, batch_size
        self.seed, self.stage, self.role = seed, stage, role
        self._cache: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            gen = torch_generator(self.seed, self.stage, f"{self.role}/epoch{epoch}")
            self._cache[epoch] = torch.randperm(self.n, generator=gen)
        return self._cache[epoch]

    def draw(self, k: int) -> Tensor:
        start = k * self.batch_size
        parts, pos = [], start
        while pos < start + self.batch_size:
            epoch, offset = divmod(pos, self.n)
            take = min(self.n - offset, start + self.batch_size - pos)
            parts.append(self._perm(epoch)[offset : offset + take])
            pos += take
        return torch.cat(parts)
