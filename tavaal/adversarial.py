"""VAE + discriminator training and scoring for VAAL and TA-VAAL queries.

Both strategies train a fresh (seeded) VAE and discriminator D inside every query, on the labeled
set L and a training pool U (the candidate subset, or the whole unlabeled pool as VAAL did), then
score the candidates with D's probability of "labeled".

Losses, per iteration (VAAL eq. 1-4; TA-VAAL eq. 3-6), with B = `vae.batch_size` points from
each of L and U:

    vae_loss_term(x) = MSE(recon, x) + beta * KL(q(z|x) || N(0, I))
        MSE: mean over every element of the batch (nn.MSELoss, as both official codes);
        KL "sum":  sum over batch and latent dims (VAAL's code, no division by the batch);
        KL "mean": mean over batch and latent dims (TA-VAAL's code).
    L_VAE = recon_weight * (vae_loss_term(x_L) + vae_loss_term(x_U))
          + adversary_weight * (BCE(D(mu_L[, r_L]), 1) + BCE(D(mu_U[, r_U]), 1))
    L_D   = BCE(D(mu_L[, r_L]), 1) + BCE(D(mu_U[, r_U]), 0)

each BCE a mean over its batch. z = mu + eps * exp(logvar / 2) (reparameterisation trick) feeds
the decoder; D sees mu, as both official codes do (not a sample z). The adversarial term of the
VAE targets "labeled" for unlabeled points too, as the papers write it (VAAL eq. 2, TA-VAAL eq.
5); VAAL's released code uses target 0 there, which makes the VAE help D instead of fooling it.

One iteration = `vae_steps` VAE updates then `disc_steps` D updates (VAAL's code 2:1, TA-VAAL's
1:1). Each VAE update draws a new (L, U) batch pair; the first D update reuses the last VAE batch
(as the official codes do) and later D updates draw new pairs. Batches come from an epoch-style
cycler: each pool is walked through a fresh seeded permutation per epoch, so the batch drawn at
any point is a function of (seed, stage, draw number) only, which makes resuming exact.

Deliberate differences from the official codes (documented where they happen): the labeled and
unlabeled batches go through the VAE as one concatenated batch (one set of batch-norm statistics,
consistent with the eval-mode scoring), and scoring runs the VAE and D in eval mode (the official
samplers leave them in train mode, so the scores depend on how candidates are batched). TA-VAAL's
official code feeds uniform noise as r on the very first iteration; here r is the Ranker output
throughout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tavaal.config import VAEConfig
from tavaal.errors import CheckpointError, IndexFileError
from tavaal.inference import batches, forward_pool, load_inputs
from tavaal.models import build_discriminator, build_vae
from tavaal.seeding import seed_everything, torch_generator

if TYPE_CHECKING:
    from tavaal.data import DatasetInfo
    from tavaal.strategies.base import QueryContext

# Keep the normalised float inputs of the query on the device up to this size; above it keep the
# raw (uint8 for images, 4x smaller) rows there and normalise each batch on the fly.
DEFAULT_MAX_CACHED_BYTES = 2 * 1024**3
RANK_STD_FLOOR = 1e-8
_CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------------------- losses


def kl_divergence(mu: Tensor, logvar: Tensor, reduction: str) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), reduced over batch and latent dims ("sum" or "mean")."""
    terms = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    raise ValueError(f"kl_reduction must be 'sum' or 'mean', got {reduction!r}")


def vae_loss_term(
    x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, beta: float, kl_reduction: str
) -> Tensor:
    """One pool's transductive term: element-mean MSE + beta * KL (VAAL eq. 1, TA-VAAL eq. 4)."""
    return F.mse_loss(recon, x) + beta * kl_divergence(mu, logvar, kl_reduction)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


# ---------------------------------------------------------------------------------- small maths


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` for binary `labels` (1 positive), via the Mann-Whitney rank sum.

    Tied scores get their average rank (a tie counts one half). NaN if a class is empty.
    """
    labels = np.asarray(labels).astype(bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def training_iterations(vae: VAEConfig, n_labeled: int, n_pool: int) -> int:
    """`vae.iterations` if set, else ceil((|L| + |pool|) * epochs / batch) (TA-VAAL code rule)."""
    if vae.iterations > 0:
        return int(vae.iterations)
    return max(1, -(-(n_labeled + n_pool) * vae.epochs // vae.batch_size))


def normalise_rank(r: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(decoder input, D input) from raw Ranker outputs r of labeled + training pool.

    "sigmoid": sigmoid(r) for both (TA-VAAL §3.1, §3.2); "zscore_sigmoid": sigmoid((r - mean) /
    std) with mean and (population) std over all of `r`, std floored at 1e-8; "official":
    sigmoid(r) into the decoder but raw r into D, as the official code does.
    """
    r = np.asarray(r, dtype=np.float64)
    if mode == "sigmoid":
        s = _sigmoid(r)
        return s, s
    if mode == "zscore_sigmoid":
        std = max(float(r.std()), RANK_STD_FLOOR) if len(r) else 1.0
        s = _sigmoid((r - (r.mean() if len(r) else 0.0)) / std)
        return s, s
    if mode == "official":
        return _sigmoid(r), r.copy()
    raise ValueError(
        f"rank_normalization must be sigmoid, zscore_sigmoid or official; got {mode!r}"
    )


def _sigmoid(v: np.ndarray) -> np.ndarray:
    # Evaluated as exp of a non-positive number only, so it never overflows.
    v = np.asarray(v, dtype=np.float64)
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ------------------------------------------------------------------------------------- the data


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
        chunk: int = 4096,
    ) -> InputBank:
        indices = np.asarray(indices, dtype=np.int64)
        per_row = 4 * math.prod(info.input_shape)
        if len(indices) * per_row <= max_cached_bytes:
            parts = [load_inputs(x, part, info, device) for part in batches(indices, chunk)]
            if not parts:
                return cls(normalised=torch.zeros((0, *info.input_shape), device=device))
            return cls(normalised=torch.cat(parts))
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
        from tavaal.data import to_tensor_batch

        return to_tensor_batch(self.raw[positions], self.info)


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


class _Cycler:
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


# ------------------------------------------------------------------------------------ training


@dataclass
class TrainedAdversary:
    vae: nn.Module
    discriminator: nn.Module
    iterations: int
    vae_losses: list[float]  # total VAE loss of the last VAE update of each iteration
    disc_losses: list[float]  # D loss of the last D update of each iteration
    train_seconds: float
    resumed_from: int = 0  # iteration a checkpoint resumed from (0: fresh start)


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
    """Train a fresh VAE and D on `data` (see the module doc for losses and schedule).

    Seeded from (seed, stage): on CPU the result is bit-for-bit reproducible.
    `checkpoint_path` + `checkpoint_every` > 0: after every `checkpoint_every` iterations the full
    training state is written atomically to `checkpoint_path`; if that file exists when training
    starts (and was written for the same query) training resumes from it, giving the same result
    as an uninterrupted run. The file is removed when training completes.
    `on_iteration(i)` is called after iteration i (1-based) and its checkpoint.
    """
    cfg = vae_config
    device = torch.device(device) if device is not None else data.bank.device
    n_l, n_u = len(data.labeled), len(data.unlabeled)
    total = training_iterations(cfg, n_l, n_u)
    sample_shape = tuple(
        data.bank[torch.zeros(1, dtype=torch.long, device=data.bank.device)].shape[1:]
    )

    seed_everything(seed, stage, "query/adversary/init")
    vae, disc = build_adversary(sample_shape, cfg, data.conditional)
    vae.to(device)
    disc.to(device)
    opt_vae = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    opt_disc = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
    noise = torch_generator(seed, stage, "query/adversary/noise", device)
    labeled_cycler = _Cycler(n_l, cfg.batch_size, seed, stage, "query/adversary/labeled")
    unlabeled_cycler = _Cycler(n_u, cfg.batch_size, seed, stage, "query/adversary/unlabeled")

    bank_device = data.bank.device
    lab_pos = torch.from_numpy(data.labeled).to(bank_device)
    unl_pos = torch.from_numpy(data.unlabeled).to(bank_device)
    dec_r = torch.from_numpy(data.decoder_r).to(device) if data.conditional else None
    dis_r = torch.from_numpy(data.disc_r).to(device) if data.conditional else None

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = _fingerprint(data, cfg, seed, stage, total, device, sample_shape)
    start, vae_losses, disc_losses, seconds_before = 0, [], [], 0.0
    if path is not None and path.exists():
        state = _load_checkpoint(path, fingerprint, log)
        if state is not None:
            vae.load_state_dict(state["vae"])
            disc.load_state_dict(state["discriminator"])
            opt_vae.load_state_dict(state["vae_optimizer"])
            opt_disc.load_state_dict(state["disc_optimizer"])
            torch.set_rng_state(state["rng_cpu"])
            noise.set_state(state["rng_noise"])
            if "rng_cuda" in state and device.type == "cuda":
                torch.cuda.set_rng_state(state["rng_cuda"], device)
            start = int(state["iteration"])
            vae_losses = [float(v) for v in state["vae_losses"]]
            disc_losses = [float(v) for v in state["disc_losses"]]
            seconds_before = float(state["train_seconds"])
            log(f"adversary: resumed from {path} at iteration {start}/{total}")

    def batch(draw: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Inputs (L rows then U rows) of draw number `draw`, with their conditions."""
        rows = torch.cat(
            [
                lab_pos[labeled_cycler.draw(draw).to(bank_device)],
                unl_pos[unlabeled_cycler.draw(draw).to(bank_device)],
            ]
        )
        x = data.bank[rows].to(device)
        if dec_r is None:
            return x, None, None
        rows = rows.to(device)
        return x, dec_r[rows], dis_r[rows]

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
            recon = vae.decode(z, r_dec)
            transductive = vae_loss_term(
                x[:b], recon[:b], mu[:b], logvar[:b], cfg.beta, cfg.kl_reduction
            ) + vae_loss_term(x[b:], recon[b:], mu[b:], logvar[b:], cfg.beta, cfg.kl_reduction)
            logits = disc(mu, r_dis)
            # VAAL eq. 2 / TA-VAAL eq. 5: the VAE wants D to call every point "labeled".
            adversarial = _bce(logits[:b], 1.0) + _bce(logits[b:], 1.0)
            vae_loss = cfg.recon_weight * transductive + cfg.adversary_weight * adversarial
            opt_vae.zero_grad(set_to_none=True)
            vae_loss.backward()
            opt_vae.step()
        for step in range(cfg.disc_steps):
            if step > 0:
                x, r_dec, r_dis = batch(draw)
                draw += 1
            with torch.no_grad():
                mu, _ = vae.encode(x)
            logits = disc(mu, r_dis)
            # VAAL eq. 3 / TA-VAAL eq. 6: labeled -> 1, unlabeled -> 0.
            disc_loss = _bce(logits[:b], 1.0) + _bce(logits[b:], 0.0)
            opt_disc.zero_grad(set_to_none=True)
            disc_loss.backward()
            opt_disc.step()
        vae_losses.append(float(vae_loss.detach()))
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
        if (
            path is not None
            and checkpoint_every > 0
            and done % checkpoint_every == 0
            and done < total
        ):
            state = {
                "format": _CHECKPOINT_FORMAT,
                "fingerprint": fingerprint,
                "vae": vae.state_dict(),
                "discriminator": disc.state_dict(),
                "vae_optimizer": opt_vae.state_dict(),
                "disc_optimizer": opt_disc.state_dict(),
                "iteration": done,
                "rng_cpu": torch.get_rng_state(),
                "rng_noise": noise.get_state(),
                "vae_losses": list(vae_losses),
                "disc_losses": list(disc_losses),
                "train_seconds": seconds_before + time.perf_counter() - began,
            }
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


# ------------------------------------------------------------------------------------- scoring


@dataclass
class AdversaryScores:
    """Eval-mode outputs on a set of bank rows."""

    logits: np.ndarray  # D logits (N,) float64; P(labeled) = sigmoid
    mu: np.ndarray  # (N, latent) float32
    recon_mse: float  # mean squared error of decode(mu[, r]) over all elements
    mean_image_mse: float  # mean squared error of predicting the rows' mean input


@torch.no_grad()
def score_rows(
    trained: TrainedAdversary,
    data: AdversarialData,
    positions: np.ndarray,
    device=None,
    batch_size: int = 512,
) -> AdversaryScores:
    """D logits, latent means and reconstruction errors of bank rows `positions` (eval mode)."""
    vae, disc = trained.vae, trained.discriminator
    device = torch.device(device) if device is not None else next(vae.parameters()).device
    vae.eval()
    disc.eval()
    positions = np.asarray(positions, dtype=np.int64)
    dec_r = torch.from_numpy(data.decoder_r) if data.conditional else None
    dis_r = torch.from_numpy(data.disc_r) if data.conditional else None
    logits, mus = [], []
    sq_error, elements = 0.0, 0
    total_x: Tensor | None = None
    for chunk in batches(positions, batch_size):
        rows = torch.from_numpy(chunk)
        x = data.bank[rows.to(data.bank.device)].to(device)
        mu, _ = vae.encode(x)
        if dec_r is not None:
            recon = vae.decode(mu, dec_r[rows].to(device))
            out = disc(mu, dis_r[rows].to(device))
        else:
            recon = vae.decode(mu)
            out = disc(mu)
        logits.append(out.double().cpu())
        mus.append(mu.float().cpu())
        sq_error += float((recon.double() - x.double()).pow(2).sum())
        elements += x.numel()
        part = x.double().sum(0)
        total_x = part if total_x is None else total_x + part
    if not logits:
        return AdversaryScores(
            np.zeros(0), np.zeros((0, 0), np.float32), float("nan"), float("nan")
        )
    mean_x = total_x / len(positions)
    centred = 0.0
    for chunk in batches(positions, batch_size):
        x = data.bank[torch.from_numpy(chunk).to(data.bank.device)].to(device)
        centred += float((x.double() - mean_x).pow(2).sum())
    return AdversaryScores(
        logits=torch.cat(logits).numpy(),
        mu=torch.cat(mus).numpy(),
        recon_mse=sq_error / elements,
        mean_image_mse=centred / elements,
    )


def adversary_diagnostics(
    trained: TrainedAdversary, candidates: AdversaryScores, labeled: AdversaryScores
) -> dict[str, float]:
    """Health of the adversarial part (DESIGN: "Outputs people look at").

    vae_recon_mse vs mean_image_mse: a VAE collapsed to the mean image has them about equal.
    latent_mu_std: mean over latent dims of the (population) std of mu over the candidates.
    disc_auc: ROC AUC of D's logit separating labeled (1) from candidates (0); ~0.5 = blind D.
    disc_output_std / disc_output_mean: spread / mean of P(labeled) over the candidates.
    vae_loss_final / disc_loss_final: mean of the last 10% of iterations (at least one).
    """
    p_cand = _sigmoid(candidates.logits)
    p_lab = _sigmoid(labeled.logits)
    tail = max(1, math.ceil(len(trained.vae_losses) / 10))
    auc = roc_auc(
        np.r_[np.ones(len(labeled.logits)), np.zeros(len(candidates.logits))],
        np.r_[labeled.logits, candidates.logits],
    )
    return {
        "vae_recon_mse": float(candidates.recon_mse),
        "mean_image_mse": float(candidates.mean_image_mse),
        "latent_mu_std": float(candidates.mu.astype(np.float64).std(axis=0).mean()),
        "disc_auc": auc,
        "disc_output_std": float(p_cand.std()),
        "disc_output_mean": float(p_cand.mean()),
        "labeled_disc_output_mean": float(p_lab.mean()),
        "vae_loss_final": float(np.mean(trained.vae_losses[-tail:])),
        "disc_loss_final": float(np.mean(trained.disc_losses[-tail:])),
        "iterations": float(trained.iterations),
        "train_seconds": float(trained.train_seconds),
    }


# ------------------------------------------------------------------------- the query, end to end


@dataclass
class AdversarialQueryResult:
    """Per candidate (in ctx.candidates order) plus the query's diagnostics."""

    disc_output: np.ndarray  # P(labeled) = sigmoid(D), float64
    unlabeled_score: np.ndarray  # 1 - P(labeled), computed as sigmoid(-D) (no cancellation)
    predicted_loss: np.ndarray | None  # raw Ranker output r (TA-VAAL)
    rank_input: np.ndarray | None  # what D got as r (TA-VAAL)
    diagnostics: dict[str, float] = field(default_factory=dict)


def run_adversarial_query(
    ctx: QueryContext,
    conditional: bool,
    max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
) -> AdversarialQueryResult:
    """Train the adversary for one query and score ctx.candidates (VAAL, or TA-VAAL if conditional).

    Reads `resume_path` and `checkpoint_every` from the context when it has them.
    """
    cfg: VAEConfig = ctx.experiment.vae
    info = ctx.dataset.info
    labeled = np.asarray(ctx.labeled, dtype=np.int64)
    candidates = np.asarray(ctx.candidates, dtype=np.int64)
    pool = candidates if cfg.train_on == "subset" else np.asarray(ctx.unlabeled, dtype=np.int64)
    overlap = np.intersect1d(labeled, pool)
    if len(overlap):
        raise IndexFileError(f"index {int(overlap[0])} is both labeled and in the unlabeled pool")
    missing = np.setdiff1d(candidates, pool)
    if len(missing):
        raise IndexFileError(f"candidate index {int(missing[0])} is not in the unlabeled pool")
    indices = np.union1d(labeled, pool)  # sorted: sequential reads of the memory map
    lab_pos = np.searchsorted(indices, labeled)
    pool_pos = np.searchsorted(indices, pool)
    cand_pos = np.searchsorted(indices, candidates)
    batch_size = ctx.experiment.query.inference_batch_size

    raw_r = decoder_r = disc_r = None
    if conditional:
        models = ctx.models
        if models is None or models.ranker is None:
            raise CheckpointError(
                f"method {ctx.method!r} needs the stage's model.pt with its Ranker "
                f"(seed {ctx.seed}, stage {ctx.stage})"
            )
        out = forward_pool(
            models.models[0],
            ctx.dataset.x_train,
            indices,
            info,
            ctx.device,
            batch_size,
            ranker=models.ranker,
        )
        raw_r = np.asarray(out.predicted_loss, dtype=np.float32)
        decoder_r, disc_r = normalise_rank(raw_r, cfg.rank_normalization)

    bank = InputBank.load(ctx.dataset.x_train, indices, info, ctx.device, max_cached_bytes)
    data = AdversarialData(
        bank=bank,
        labeled=lab_pos,
        unlabeled=pool_pos,
        decoder_r=decoder_r,
        disc_r=disc_r,
        indices=indices,
    )
    iterations = training_iterations(cfg, len(labeled), len(pool))
    ctx.log(
        f"{ctx.method}: training VAE + discriminator on {len(labeled)} labeled + {len(pool)} "
        f"unlabeled ({cfg.train_on}), {iterations} iterations"
    )
    trained = train_adversary(
        data,
        cfg,
        seed=ctx.seed,
        stage=ctx.stage,
        device=ctx.device,
        log=ctx.log,
        checkpoint_path=getattr(ctx, "resume_path", None),
        checkpoint_every=int(getattr(ctx, "checkpoint_every", 0) or 0),
    )
    cand_scores = score_rows(trained, data, cand_pos, ctx.device, batch_size)
    lab_scores = score_rows(trained, data, lab_pos, ctx.device, batch_size)
    diagnostics = adversary_diagnostics(trained, cand_scores, lab_scores)
    ctx.log(
        f"{ctx.method}: recon MSE {diagnostics['vae_recon_mse']:.4f} (mean image "
        f"{diagnostics['mean_image_mse']:.4f}), latent std {diagnostics['latent_mu_std']:.4f}, "
        f"D AUC {diagnostics['disc_auc']:.3f}"
    )
    return AdversarialQueryResult(
        disc_output=_sigmoid(cand_scores.logits),
        unlabeled_score=_sigmoid(-cand_scores.logits),
        predicted_loss=raw_r[cand_pos].astype(np.float64) if raw_r is not None else None,
        rank_input=data.disc_r[cand_pos].astype(np.float64) if data.conditional else None,
        diagnostics=diagnostics,
    )
