"""Every random choice is seeded from (seed, stage, role), so reruns give identical files."""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(seed: int, stage: int | None, role: str) -> int:
    """A 63-bit seed that depends only on (seed, stage, role); stable across Python versions."""
    key = f"{int(seed)}/{'-' if stage is None else int(stage)}/{role}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def numpy_rng(seed: int, stage: int | None, role: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, stage, role))


def torch_generator(seed: int, stage: int | None, role: str, device="cpu"):
    # torch is imported where it is used: jobs that only draw indices (init_pool) never load it.
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, stage, role))
    return gen


def seed_everything(seed: int, stage: int | None, role: str) -> None:
    """Seed the global RNGs (weight init, dropout) and ask torch for deterministic kernels."""
    import torch

    value = derive_seed(seed, stage, role)
    random.seed(value)
    np.random.seed(value % (2**32))
    torch.manual_seed(value)
    # Same effect as use_deterministic_algorithms(True, warn_only=True) without importing
    # torch._inductor, which costs each workflow job ~1.5 s.
    torch.set_deterministic_debug_mode("warn")
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
