"""Training a fresh VAE and discriminator inside one VAAL / TA-VAAL query (VAAL Alg. 1).

One iteration = `vae_steps` VAE updates then `disc_steps` D updates (VAAL's code 2:1, TA-VAAL's
1:1). Each VAE update draws a new (L, U) batch pair; the first D update reuses the last VAE batch
(as the official codes do) and later D updates draw new pairs. Batches come from `BatchCycler`s,
so the batch drawn at any point is a function of (seed, stage, draw number) only, which makes
resuming exact. z = mu + eps * exp(logvar / 2) feeds the decoder; D sees mu, as both official
codes do (not a sample z). Losses: `tavaal.adversarial.objectives`.

Deliberate differences from the official codes: the labeled and unlabeled batches go through the
VAE as one concatenated batch (one set of batch-norm statistics, consistent with the eval-mode
scoring); TA-VAAL's official code feeds uniform noise as r on the very first iteration, here r
is the Ranker output throughout; the VAE and D are trained once per query, after the task
learner, rather than interleaved with its epochs as TA-VAAL's Alg. 1 writes it (the official
code also trains them after the task learner).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tavaal.adversarial.data import AdversarialData, BatchCycler
from tavaal.adversarial.objectives import discriminator_objective, vae_objective
from tavaal.config import VAEConfig
from tavaal.errors import CheckpointError
from tavaal.models import build_discriminator, build_vae
from tavaal.optim import build_optimizer
from tavaal.seeding import seed_everything, torch_generator

_CHECKPOINT_FORMAT = 1


@dataclass
class TrainedAdversary:
    vae: nn.Module
    discriminator: nn.Module
    iterations: int
    vae_losses: list[float]  # total VAE loss of the last VAE update of each iteration
    disc_losses: list[float]  # D loss of the last D update of each iteration
    train_seconds: float
    resumed_from: int = 0  # iteration a checkpoint resumed from (0: fresh start)


def training_iterations(vae: VAEConfig, n_labeled: int, n_pool: int) -> int:
    """`vae.iterations` if set, else ceil((|L| + |pool|) * epochs / batch) (TA-VAAL code rule)."""
    if vae.iterations > 0:
        return int(vae.iterations)
    return max(1, -(-(n_labeled + n_pool) * vae.epochs // vae.batch_size))


def build_adversary(input_shape, vae: VAEConfig, conditional: bool) -> tuple[nn.Module, nn.Module]:
    cond_dim = 1 if conditional else 0
    model = build_vae(
        tuple(input_shape),
        vae.latent_dim,
        cond_dim,
        base_channels=vae.base_channels,
        hidden=vae.hidden,
    )
    disc = build_discriminator(
        vae.latent_dim, cond_dim, hidden=vae.disc_hidden, depth=vae.disc_depth
    )
    return model, disc


class _Batches:
    """Draw number -> (inputs with L rows first, decoder r, D r) on the training device."""

    def __init__(self, data: AdversarialData, cfg: VAEConfig, seed: int, stage: int, device):
        self.data, self.device = data, device
        bank_device = data.bank.device
        self.labeled = torch.from_numpy(data.labeled).to(bank_device)
        self.unlabeled = torch.from_numpy(data.unlabeled).to(bank_device)
        self.labeled_cycler = BatchCycler(
            len(data.labeled), cfg.batch_size, seed, stage, "query/adversary/labeled"
        )
        self.unlabeled_cycler = BatchCycler(
            len(data.unlabeled), cfg.batch_size, seed, stage, "query/adversary/unlabeled"
        )
        conditional = data.conditional
        self.decoder_r = torch.from_numpy(data.decoder_r).to(device) if conditional else None
        self.disc_r = torch.from_numpy(data.disc_r).to(device) if conditional else None

    def __call__(self, draw: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        bank_device = self.data.bank.device
        rows = torch.cat(
            [
                self.labeled[self.labeled_cycler.draw(draw).to(bank_device)],
                self.unlabeled[self.unlabeled_cycler.draw(draw).to(bank_device)],
            ]
        )
        x = self.data.bank[rows].to(self.device)
        if self.decoder_r is None:
            return x, None, None
        rows = rows.to(self.device)
        return x, self.decoder_r[rows], self.disc_r[rows]


def train_adversary(
    data: AdversarialData,
    vae_config: VAEConfig,
    *,
    seed: int,
    stage: int,
    device=None,
    log: Callable[[str], None] = print,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    on_iteration: Callable[[int], None] | None = None,
) -> TrainedAdversary:
    """Train a fresh VAE and D on `data` (see the module doc for the schedule).

    Seeded from (seed, stage): on CPU the result is bit-for-bit reproducible.
    `checkpoint_path` + `checkpoint_every` > 0: after every `checkpoint_every` iterations the full
    training state is written atomically to `checkpoint_path`; if that file exists when training
    starts (and was written for the same query) training resumes from it, giving the same result
    as an uninterrupted run. The file is removed when training completes.
    `on_iteration(i)` is called after iteration i (1-based) and its checkpoint.
    """
    cfg = vae_config
    device = torch.device(device) if device is not None else data.bank.device
    total = training_iterations(cfg, len(data.labeled), len(data.unlabeled))
    sample_shape = tuple(
        data.bank[torch.zeros(1, dtype=torch.long, device=data.bank.device)].shape[1:]
    )

    seed_everything(seed, stage, "query/adversary/init")
    vae, disc = build_adversary(sample_shape, cfg, data.conditional)
    vae.to(device)
    disc.to(device)
    # Plain torch Adam, without its torch._dynamo import (tavaal.optim).
    opt_vae = build_optimizer(torch.optim.Adam, vae.parameters(), lr=cfg.lr)
    opt_disc = build_optimizer(torch.optim.Adam, disc.parameters(), lr=cfg.disc_lr)
    noise = torch_generator(seed, stage, "query/adversary/noise", device)
    batch = _Batches(data, cfg, seed, stage, device)
    # Everything whose state a resumable checkpoint holds, by its key there.
    modules = {
        "vae": vae,
        "discriminator": disc,
        "vae_optimizer": opt_vae,
        "disc_optimizer": opt_disc,
    }

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = _fingerprint(data, cfg, seed, stage, total, device, sample_shape)
    state = _load_checkpoint(path, fingerprint, log) if path and path.exists() else None
    start, vae_losses, disc_losses, seconds_before = 0, [], [], 0.0
    if state is not None:
        for key, module in modules.items():
            module.load_state_dict(state[key])
        torch.set_rng_state(state["rng_cpu"])
        noise.set_state(state["rng_noise"])
        if "rng_cuda" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        start = int(state["iteration"])
        vae_losses = [float(v) for v in state["vae_losses"]]
        disc_losses = [float(v) for v in state["disc_losses"]]
        seconds_before = float(state["train_seconds"])
        log(f"adversary: resumed from {path} at iteration {start}/{total}")

    b = cfg.batch_size
    draws_per_iteration = cfg.vae_steps + cfg.disc_steps - 1
    log_every = max(1, math.ceil(total / 10))
    began = time.perf_counter()
    window_start, window_iter = began, start
    vae.train()
    disc.train()
    for it in range(start, total):
        draw = it * draws_per_iteration
        for _ in range(cfg.vae_steps):
            x, r_dec, r_dis = batch(draw)
            draw += 1
            # One pass for L and U together: one set of batch-norm statistics (module doc).
            mu, logvar = vae.encode(x)
            eps = torch.randn(mu.shape, generator=noise, device=device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation trick (VAAL §3.1)
            loss = vae_objective(x, vae.decode(z, r_dec), mu, logvar, disc(mu, r_dis), b, cfg)
            opt_vae.zero_grad(set_to_none=True)
            loss.total.backward()
            opt_vae.step()
        for step in range(cfg.disc_steps):
            if step > 0:
                x, r_dec, r_dis = batch(draw)
                draw += 1
            with torch.no_grad():
                mu, _ = vae.encode(x)
            disc_loss = discriminator_objective(disc(mu, r_dis), b)
            opt_disc.zero_grad(set_to_none=True)
            disc_loss.backward()
            opt_disc.step()
        vae_losses.append(float(loss.total.detach()))
        disc_losses.append(float(disc_loss.detach()))
        done = it + 1
        if done % log_every == 0 or done == total:
            now = time.perf_counter()
            rate = (done - window_iter) / max(now - window_start, 1e-9)
            log(
                f"adversary iteration {done}/{total}: vae_loss {vae_losses[-1]:.4f} "
                f"disc_loss {disc_losses[-1]:.4f} ({rate:.1f} it/s)"
            )
            window_start, window_iter = now, done
        if _checkpoint_due(path, checkpoint_every, done, total):
            state = {key: module.state_dict() for key, module in modules.items()}
            state.update(
                format=_CHECKPOINT_FORMAT,
                fingerprint=fingerprint,
                iteration=done,
                rng_cpu=torch.get_rng_state(),
                rng_noise=noise.get_state(),
                vae_losses=list(vae_losses),
                disc_losses=list(disc_losses),
                train_seconds=seconds_before + time.perf_counter() - began,
            )
            if device.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state(device)
            _atomic_save(state, path)
        if on_iteration is not None:
            on_iteration(done)
    seconds = seconds_before + time.perf_counter() - began
    if path is not None and path.exists():
        path.unlink()
    vae.eval()
    disc.eval()
    return TrainedAdversary(
        vae=vae,
        discriminator=disc,
        iterations=total,
        vae_losses=vae_losses,
        disc_losses=disc_losses,
        train_seconds=seconds,
        resumed_from=start,
    )


def _checkpoint_due(path: Path | None, every: int, done: int, total: int) -> bool:
    # The last iteration needs none: the finished adversary is used at once.
    return path is not None and every > 0 and done % every == 0 and done < total


def _fingerprint(data, cfg, seed, stage, total, device, sample_shape) -> str:
    """What a checkpoint must have been written for to be resumed: the same query, exactly."""
    digest = hashlib.sha256()
    meta = {
        "format": _CHECKPOINT_FORMAT,
        # Every setting but how often to checkpoint, which does not change the result.
        "vae": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "checkpoint_every"},
        "seed": int(seed),
        "stage": int(stage),
        "iterations": int(total),
        "device": torch.device(device).type,
        "shape": list(sample_shape),
        "rows": len(data.bank),
        "conditional": data.conditional,
    }
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for array in (data.labeled, data.unlabeled, data.indices, data.decoder_r, data.disc_r):
        digest.update(b"|" if array is None else np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _atomic_save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, fingerprint: str, log) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(
            f"{path}: adversary checkpoint cannot be read ({err}); delete it to start afresh"
        ) from err
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an adversary checkpoint; delete it to start afresh")
    if state.get("fingerprint") != fingerprint:
        # Written for another query (other settings, labeled set or device): correctness first.
        log(f"adversary: ignoring {path}, it was written for a different query; starting afresh")
        return None
    return state
