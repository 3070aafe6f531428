"""Training a fresh VAE and discriminator inside one VAAL / TA-VAAL query (VAAL Alg. 1).

One iteration = `vae_steps` VAE updates then `disc_steps` D updates (VAAL's code 2:1, TA-VAAL's
1:1). Each VAE update draws a new (L, U) batch pair; the first D update reuses the last VAE batch
(as the official codes do) and later D updates draw new pairs. Batches come from `BatchCycler`s,
so the batch drawn at any point is a function of (seed, stage, draw number) only, which makes
resuming exact. z = mu + eps * exp(logvar / 2) feeds the decoder; D sees mu, as both official
codes do (not a sample z). Losses: `tavaal.adversarial.objectives`.

The ablations of VAAL §5.1 train with the same loop, batches and checkpoints (`Variant`):
PIXEL_DISCRIMINATOR trains D alone on the flattened inputs; FROZEN_VAE trains the VAE without
the adversarial term for the schedule's iterations, then freezes it (eval mode, batch norm on its
running statistics) and trains D on its codes mu for as many iterations: "frozen" in the paper's
sense, a D that never chases a moving latent; PLAIN_VAE trains the VAE alone, for the
2-Wasserstein heuristic (eq. 5), which needs no D.

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
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from tavaal.adversarial.data import AdversarialData, BatchCycler
from tavaal.adversarial.objectives import (
    VAELoss,
    discriminator_objective,
    plain_vae_objective,
    vae_objective,
)
from tavaal.atomic import atomic_write
from tavaal.config import VAEConfig
from tavaal.errors import CheckpointError
from tavaal.models import PixelDiscriminator, build_discriminator, build_vae
from tavaal.optim import build_optimizer
from tavaal.portable_adam import PortableAdam
from tavaal.seeding import seed_everything, torch_generator

_CHECKPOINT_FORMAT = 1

# What a query trains: VAAL / TA-VAAL's minimax game, or one of VAAL's §5.1 ablations.
Variant = Literal["adversarial", "pixel_discriminator", "frozen_vae", "plain_vae"]
ADVERSARIAL: Variant = "adversarial"
PIXEL_DISCRIMINATOR: Variant = "pixel_discriminator"
FROZEN_VAE: Variant = "frozen_vae"
PLAIN_VAE: Variant = "plain_vae"


@dataclass
class TrainedAdversary:
    vae: nn.Module | None  # None: PIXEL_DISCRIMINATOR
    discriminator: nn.Module | None  # None: PLAIN_VAE
    iterations: int
    vae_losses: list[float]  # total VAE loss of the last VAE update of each iteration
    disc_losses: list[float]  # D loss of the last D update of each iteration
    train_seconds: float
    resumed_from: int = 0  # iteration a checkpoint resumed from (0: fresh start)
    variant: Variant = ADVERSARIAL


def training_iterations(vae: VAEConfig, n_labeled: int, n_pool: int) -> int:
    """`vae.iterations` if set, else ceil((|L| + |pool|) * epochs / batch) (TA-VAAL code rule)."""
    if vae.iterations > 0:
        return int(vae.iterations)
    return max(1, -(-(n_labeled + n_pool) * vae.epochs // vae.batch_size))


def build_adversary(
    input_shape, vae: VAEConfig, conditional: bool, variant: Variant = ADVERSARIAL
) -> tuple[nn.Module | None, nn.Module | None]:
    """The (VAE, D) pair a variant trains; None for the one it has not."""
    if conditional and variant != ADVERSARIAL:
        raise ValueError(f"the {variant} ablation has no rank conditioning")
    cond_dim = 1 if conditional else 0
    if variant == PIXEL_DISCRIMINATOR:
        return None, PixelDiscriminator(input_shape, vae.disc_hidden, vae.disc_depth)
    model = build_vae(
        tuple(input_shape),
        vae.latent_dim,
        cond_dim,
        base_channels=vae.base_channels,
        hidden=vae.hidden,
        init=vae.init,
    )
    if variant == PLAIN_VAE:
        return model, None
    disc = build_discriminator(
        vae.latent_dim, cond_dim, hidden=vae.disc_hidden, depth=vae.disc_depth
    )
    return model, disc


def variant_iterations(variant: Variant, schedule: int) -> int:
    """Loop iterations of a variant for a schedule of `schedule` iterations: FROZEN_VAE trains
    its VAE and then its D, each for the whole schedule."""
    return 2 * schedule if variant == FROZEN_VAE else schedule


class _Phase:
    """Which updates iteration `it` makes, and the number of its first batch draw."""

    def __init__(self, variant: Variant, cfg: VAEConfig, schedule: int) -> None:
        self.variant, self.cfg, self.schedule = variant, cfg, schedule

    def vae_updates(self, it: int) -> int:
        if self.variant == PIXEL_DISCRIMINATOR:
            return 0
        if self.variant == FROZEN_VAE and it >= self.schedule:
            return 0
        return self.cfg.vae_steps

    def disc_updates(self, it: int) -> int:
        if self.variant == PLAIN_VAE:
            return 0
        if self.variant == FROZEN_VAE and it < self.schedule:
            return 0
        return self.cfg.disc_steps

    def draws(self, it: int) -> int:
        # In the adversarial game the first D update reuses the last VAE batch.
        shared = 1 if self.vae_updates(it) and self.disc_updates(it) else 0
        return self.vae_updates(it) + self.disc_updates(it) - shared

    def first_draw(self, it: int) -> int:
        if self.variant != FROZEN_VAE or it < self.schedule:
            return it * self.draws(0)
        vae_draws = self.schedule * self.cfg.vae_steps
        return vae_draws + (it - self.schedule) * self.cfg.disc_steps


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
    variant: Variant = ADVERSARIAL,
) -> TrainedAdversary:
    """Train a fresh VAE and D on `data` (see the module doc for the schedule and variants).

    Seeded from (seed, stage): on CPU the result is bit-for-bit reproducible.
    `checkpoint_path` + `checkpoint_every` > 0: after every `checkpoint_every` iterations the full
    training state is written atomically to `checkpoint_path`; if that file exists when training
    starts (and was written for the same query) training resumes from it, giving the same result
    as an uninterrupted run. The file is removed when training completes.
    `on_iteration(i)` is called after iteration i (1-based) and its checkpoint.
    """
    cfg = vae_config
    device = torch.device(device) if device is not None else data.bank.device
    schedule = training_iterations(cfg, len(data.labeled), len(data.unlabeled))
    total = variant_iterations(variant, schedule)
    sample_shape = tuple(
        data.bank[torch.zeros(1, dtype=torch.long, device=data.bank.device)].shape[1:]
    )
    game = _Game.start(data, cfg, variant, schedule, sample_shape, seed, stage, device)

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = _fingerprint(data, cfg, seed, stage, total, device, sample_shape, variant)
    state = _load_checkpoint(path, fingerprint, log) if path and path.exists() else None
    if state is not None:
        game.restore(state, device)
        log(f"adversary: resumed from {path} at iteration {game.resumed_from}/{total}")

    progress = _Progress(total, game.resumed_from, game.seconds_before, log)
    game.train_mode()
    for it in range(game.resumed_from, total):
        game.play(it)
        done = it + 1
        progress.report(done, game)
        if _checkpoint_due(path, checkpoint_every, done, total):
            with atomic_write(path) as tmp:
                torch.save(game.checkpoint(fingerprint, done, progress.seconds()), tmp)
        if on_iteration is not None:
            on_iteration(done)
    seconds = progress.seconds()
    if path is not None and path.exists():
        path.unlink()
    game.eval_mode()
    return TrainedAdversary(
        vae=game.vae,
        discriminator=game.disc,
        iterations=total,
        vae_losses=game.vae_losses,
        disc_losses=game.disc_losses,
        train_seconds=seconds,
        resumed_from=game.resumed_from,
        variant=variant,
    )


@dataclass
class _Game:
    """The VAE, D, their optimizers, the noise generator and the losses: what one adversarial
    training updates, and what a resumable checkpoint holds."""

    vae: nn.Module | None
    disc: nn.Module | None
    opt_vae: torch.optim.Optimizer | None
    opt_disc: torch.optim.Optimizer | None
    noise: torch.Generator
    batch: _Batches
    phase: _Phase
    cfg: VAEConfig
    variant: Variant
    schedule: int
    device: torch.device
    vae_losses: list[float] = dataclasses.field(default_factory=list)
    disc_losses: list[float] = dataclasses.field(default_factory=list)
    resumed_from: int = 0
    seconds_before: float = 0.0

    @classmethod
    def start(cls, data, cfg, variant, schedule, sample_shape, seed, stage, device) -> _Game:
        seed_everything(seed, stage, "query/adversary/init")
        vae, disc = build_adversary(sample_shape, cfg, data.conditional, variant)
        opt_vae = opt_disc = None
        if vae is not None:
            vae.to(device)
            # torch's Adam with a correctly rounded sqrt (tavaal.portable_adam), without its
            # torch._dynamo import (tavaal.optim).
            opt_vae = build_optimizer(PortableAdam, vae.parameters(), lr=cfg.lr)
        if disc is not None:
            disc.to(device)
            opt_disc = build_optimizer(PortableAdam, disc.parameters(), lr=cfg.disc_lr)
        return cls(
            vae=vae,
            disc=disc,
            opt_vae=opt_vae,
            opt_disc=opt_disc,
            noise=torch_generator(seed, stage, "query/adversary/noise", device),
            batch=_Batches(data, cfg, seed, stage, device),
            phase=_Phase(variant, cfg, schedule),
            cfg=cfg,
            variant=variant,
            schedule=schedule,
            device=device,
        )

    def _modules(self) -> dict:
        """Everything whose state a resumable checkpoint holds, by its key there."""
        parts = {
            "vae": self.vae,
            "vae_optimizer": self.opt_vae,
            "discriminator": self.disc,
            "disc_optimizer": self.opt_disc,
        }
        return {key: part for key, part in parts.items() if part is not None}

    def play(self, it: int) -> None:
        """Iteration `it`: the phase's VAE updates, then its D updates (module doc)."""
        vae, disc, b = self.vae, self.disc, self.cfg.batch_size
        draw = self.phase.first_draw(it)
        x = r_dec = r_dis = None
        for _ in range(self.phase.vae_updates(it)):
            x, r_dec, r_dis = self.batch(draw)
            draw += 1
            dtype = next(vae.parameters()).dtype
            eps = torch.randn(
                (len(x), vae.latent_dim), generator=self.noise, device=self.device, dtype=dtype
            )
            adversary = disc if self.variant == ADVERSARIAL else None
            loss = vae_update(vae, adversary, self.opt_vae, x, r_dec, r_dis, eps, b, self.cfg)
        if self.variant == FROZEN_VAE and it >= self.schedule and vae.training:
            vae.eval()  # frozen from here on: codes from its running batch-norm statistics
        for step in range(self.phase.disc_updates(it)):
            if step > 0 or x is None:
                x, r_dec, r_dis = self.batch(draw)
                draw += 1
            disc_loss = disc_update(vae, disc, self.opt_disc, x, r_dis, b)
        if self.phase.vae_updates(it):
            self.vae_losses.append(float(loss.total.detach()))
        if self.phase.disc_updates(it):
            self.disc_losses.append(float(disc_loss.detach()))

    def checkpoint(self, fingerprint: str, iteration: int, seconds: float) -> dict:
        state = {key: module.state_dict() for key, module in self._modules().items()}
        state.update(
            format=_CHECKPOINT_FORMAT,
            fingerprint=fingerprint,
            iteration=iteration,
            rng_cpu=torch.get_rng_state(),
            rng_noise=self.noise.get_state(),
            vae_losses=list(self.vae_losses),
            disc_losses=list(self.disc_losses),
            train_seconds=seconds,
        )
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def restore(self, state: dict, device: torch.device) -> None:
        for key, module in self._modules().items():
            module.load_state_dict(state[key])
        torch.set_rng_state(state["rng_cpu"])
        self.noise.set_state(state["rng_noise"])
        if "rng_cuda" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        self.resumed_from = int(state["iteration"])
        self.vae_losses = [float(v) for v in state["vae_losses"]]
        self.disc_losses = [float(v) for v in state["disc_losses"]]
        self.seconds_before = float(state["train_seconds"])

    def train_mode(self) -> None:
        for module in (self.vae, self.disc):
            if module is not None:
                module.train()

    def eval_mode(self) -> None:
        for module in (self.vae, self.disc):
            if module is not None:
                module.eval()


class _Progress:
    """A log line every tenth of the iterations (losses, iterations per second), and the
    training seconds counted across resumptions."""

    def __init__(
        self, total: int, start: int, seconds_before: float, log: Callable[[str], None]
    ) -> None:
        self.total, self.log, self.seconds_before = total, log, seconds_before
        self.every = max(1, math.ceil(total / 10))
        self.began = time.perf_counter()
        self.window_start, self.window_iter = self.began, start

    def report(self, done: int, game: _Game) -> None:
        if done % self.every and done != self.total:
            return
        now = time.perf_counter()
        rate = (done - self.window_iter) / max(now - self.window_start, 1e-9)
        losses = [
            f"{name} {values[-1]:.4f}"
            for name, values in (("vae_loss", game.vae_losses), ("disc_loss", game.disc_losses))
            if values
        ]
        self.log(f"adversary iteration {done}/{self.total}: {' '.join(losses)} ({rate:.1f} it/s)")
        self.window_start, self.window_iter = now, done

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.began


def encode_batch(vae: nn.Module, x: Tensor, labeled_count: int, separate: bool):
    """(mu, logvar) of a batch whose first `labeled_count` rows are labeled: one pass for L and U
    together (one set of batch-norm statistics, module doc), or with `separate` one pass each,
    as the official codes run them."""
    if not separate:
        return vae.encode(x)
    parts = [vae.encode(x[:labeled_count]), vae.encode(x[labeled_count:])]
    return torch.cat([parts[0][0], parts[1][0]]), torch.cat([parts[0][1], parts[1][1]])


def vae_update(
    vae: nn.Module,
    disc: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    r_dec: Tensor | None,
    r_dis: Tensor | None,
    eps: Tensor,
    labeled_count: int,
    cfg: VAEConfig,
    separate_batch_norm: bool = False,
) -> VAELoss:
    """One VAE update on a batch whose first `labeled_count` rows are labeled: L_VAE with D's
    term (`disc`), or without it (`disc` None: the plain VAE of the ablations); `eps` (N, latent)
    is the reparameterisation noise. `separate_batch_norm`: L and U pass through the VAE
    separately, as in the official codes (used to check equality with them)."""
    b = labeled_count
    mu, logvar = encode_batch(vae, x, b, separate_batch_norm)
    z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation trick (VAAL §3.1)
    if separate_batch_norm:
        r_parts = (None, None) if r_dec is None else (r_dec[:b], r_dec[b:])
        recon = torch.cat([vae.decode(z[:b], r_parts[0]), vae.decode(z[b:], r_parts[1])])
    else:
        recon = vae.decode(z, r_dec)
    if disc is not None:
        loss = vae_objective(x, recon, mu, logvar, disc(mu, r_dis), b, cfg)
    else:
        loss = plain_vae_objective(x, recon, mu, logvar, b, cfg)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    optimizer.step()
    return loss


def disc_update(
    vae: nn.Module | None,
    disc: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    r_dis: Tensor | None,
    labeled_count: int,
    separate_batch_norm: bool = False,
) -> Tensor:
    """One D update on the codes mu of a batch (the inputs themselves without a VAE) whose first
    `labeled_count` rows are labeled; returns L_D. `separate_batch_norm` as in `vae_update`."""
    if vae is None:
        disc_input = x
    else:
        with torch.no_grad():
            disc_input, _ = encode_batch(vae, x, labeled_count, separate_batch_norm)
    loss = discriminator_objective(disc(disc_input, r_dis), labeled_count)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _checkpoint_due(path: Path | None, every: int, done: int, total: int) -> bool:
    # The last iteration needs none: the finished adversary is used at once.
    return path is not None and every > 0 and done % every == 0 and done < total


def _fingerprint(data, cfg, seed, stage, total, device, sample_shape, variant) -> str:
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
    if variant != ADVERSARIAL:  # VAAL/TA-VAAL checkpoints written before variants stay valid
        meta["variant"] = variant
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for array in (data.labeled, data.unlabeled, data.indices, data.decoder_r, data.disc_r):
        digest.update(b"|" if array is None else np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


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
