"""Scoring with a trained adversary and the health of the adversarial part.

Scoring runs the VAE and D in eval mode (batch norm on its running statistics), so a candidate's
score does not depend on which other candidates share its batch; the official samplers leave
both in train mode. D was trained on train-mode codes, so the two modes differ slightly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tavaal.adversarial.conditioning import average_ranks, sigmoid
from tavaal.adversarial.data import AdversarialData
from tavaal.adversarial.training import TrainedAdversary
from tavaal.inference import batches


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
    u = average_ranks(scores)[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass
class AdversaryScores:
    """Eval-mode outputs on a set of bank rows (NaN / empty for a part the variant lacks)."""

    logits: np.ndarray  # D logits (N,) float64; P(labeled) = sigmoid; NaN without a D
    mu: np.ndarray  # (N, latent) float32; (N, 0) without a VAE
    sigma: np.ndarray  # (N, latent) float32, exp(logvar / 2); (N, 0) without a VAE
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
    """D logits, latent Gaussians and reconstruction errors of bank rows `positions` (eval
    mode), for every variant: without a VAE, D sees the inputs; without a D, logits are NaN."""
    vae, disc = trained.vae, trained.discriminator
    any_module = vae if vae is not None else disc
    device = torch.device(device) if device is not None else next(any_module.parameters()).device
    for module in (vae, disc):
        if module is not None:
            module.eval()
    positions = np.asarray(positions, dtype=np.int64)
    dec_r = torch.from_numpy(data.decoder_r) if data.conditional else None
    dis_r = torch.from_numpy(data.disc_r) if data.conditional else None
    logits, mus, sigmas = [], [], []
    sq_error, elements = 0.0, 0
    total_x: Tensor | None = None
    for chunk in batches(positions, batch_size):
        rows = torch.from_numpy(chunk)
        x = data.bank[rows.to(data.bank.device)].to(device)
        r_dec = dec_r[rows].to(device) if dec_r is not None else None
        r_dis = dis_r[rows].to(device) if dis_r is not None else None
        if vae is not None:
            mu, logvar = vae.encode(x)
            recon = vae.decode(mu, r_dec)
            mus.append(mu.float().cpu())
            sigmas.append(torch.exp(0.5 * logvar).float().cpu())
            sq_error += float((recon.double() - x.double()).pow(2).sum())
        if disc is None:
            logits.append(torch.full((len(chunk),), float("nan"), dtype=torch.float64))
        else:
            logits.append(disc(x if vae is None else mu, r_dis).double().cpu())
        elements += x.numel()
        part = x.double().sum(0)
        total_x = part if total_x is None else total_x + part
    if not logits:
        empty = np.zeros((0, 0), np.float32)
        return AdversaryScores(np.zeros(0), empty, empty, float("nan"), float("nan"))
    mean_x = total_x / len(positions)
    centred = 0.0
    for chunk in batches(positions, batch_size):
        x = data.bank[torch.from_numpy(chunk).to(data.bank.device)].to(device)
        centred += float((x.double() - mean_x).pow(2).sum())
    no_latent = np.zeros((len(positions), 0), np.float32)
    return AdversaryScores(
        logits=torch.cat(logits).numpy(),
        mu=torch.cat(mus).numpy() if mus else no_latent,
        sigma=torch.cat(sigmas).numpy() if sigmas else no_latent,
        recon_mse=sq_error / elements if vae is not None else float("nan"),
        mean_image_mse=centred / elements,
    )


def wasserstein_to_centroid(
    mu: np.ndarray, sigma: np.ndarray, labeled_mu: np.ndarray, labeled_sigma: np.ndarray
) -> np.ndarray:
    """2-Wasserstein distance of each latent Gaussian N(mu, diag(sigma^2)) to the labeled set's
    centroid (VAAL §5.1, eq. 5): W = sqrt(|mu - mu_c|^2 + |sigma - sigma_c|^2), the Frobenius
    norm of the difference of the diagonal square roots of the covariances. The centroid
    (mu_c, sigma_c) is the mean of the labeled codes' mu and sigma, which is the 2-Wasserstein
    barycenter of diagonal Gaussians."""
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    centre_mu = np.asarray(labeled_mu, np.float64).mean(axis=0)
    centre_sigma = np.asarray(labeled_sigma, np.float64).mean(axis=0)
    squared = ((mu - centre_mu) ** 2).sum(axis=1) + ((sigma - centre_sigma) ** 2).sum(axis=1)
    return np.sqrt(squared)


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
    p_cand = sigmoid(candidates.logits)
    p_lab = sigmoid(labeled.logits)
    auc = math.nan
    if trained.discriminator is not None:
        auc = roc_auc(
            np.r_[np.ones(len(labeled.logits)), np.zeros(len(candidates.logits))],
            np.r_[labeled.logits, candidates.logits],
        )
    mu = candidates.mu.astype(np.float64)
    return {
        "vae_recon_mse": float(candidates.recon_mse),
        "mean_image_mse": float(candidates.mean_image_mse),
        "latent_mu_std": float(mu.std(axis=0).mean()) if mu.shape[1] else math.nan,
        "disc_auc": auc,
        "disc_output_std": float(p_cand.std()),
        "disc_output_mean": float(p_cand.mean()),
        "labeled_disc_output_mean": float(p_lab.mean()),
        "vae_loss_final": _tail_mean(trained.vae_losses),
        "disc_loss_final": _tail_mean(trained.disc_losses),
        "iterations": float(trained.iterations),
        "train_seconds": float(trained.train_seconds),
    }


def _tail_mean(losses: list[float]) -> float:
    """Mean of the last 10% of the recorded losses (at least one); NaN when none were."""
    if not losses:
        return math.nan
    return float(np.mean(losses[-max(1, math.ceil(len(losses) / 10)) :]))
