"""The VAE and discriminator objectives of VAAL (eq. 1-4) and TA-VAAL (eq. 3-6).

With B = `vae.batch_size` points from each of the labeled set L and the unlabeled pool U:

    vae_loss_term(x) = MSE(recon, x) + beta * KL(q(z|x) || N(0, I))
        MSE: mean over every element of the batch (nn.MSELoss, as both official codes);
        KL "sum":  sum over batch and latent dims (VAAL's code, no division by the batch);
        KL "mean": mean over batch and latent dims (TA-VAAL's code).
    L_VAE = recon_weight * (vae_loss_term(x_L) + vae_loss_term(x_U))
          + adversary_weight * (BCE(D(mu_L[, r_L]), 1) + BCE(D(mu_U[, r_U]), 1))
    L_D   = BCE(D(mu_L[, r_L]), 1) + BCE(D(mu_U[, r_U]), 0)

each BCE a mean over its batch. The adversarial term of the VAE targets "labeled" (1) for the
unlabeled batch too: the VAE tries to make D call every point labeled (VAAL eq. 2, TA-VAAL eq.
5), and both official codes do the same (their VAE loss compares D's output on the unlabeled
batch with a tensor of ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tavaal.config import VAEConfig


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


def bce(logits: Tensor, target: float) -> Tensor:
    """Mean binary cross-entropy of `logits` against a constant target (0 or 1)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _transductive(
    x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, b: int, cfg: VAEConfig
) -> Tensor:
    """vae_loss_term of the labeled rows (the first b) plus that of the unlabeled rows."""
    return vae_loss_term(
        x[:b], recon[:b], mu[:b], logvar[:b], cfg.beta, cfg.kl_reduction
    ) + vae_loss_term(x[b:], recon[b:], mu[b:], logvar[b:], cfg.beta, cfg.kl_reduction)


@dataclass
class VAELoss:
    total: Tensor
    transductive: Tensor  # the two vae_loss_terms, before recon_weight
    adversarial: Tensor  # the two BCE terms, before adversary_weight


def vae_objective(
    x: Tensor,
    recon: Tensor,
    mu: Tensor,
    logvar: Tensor,
    disc_logits: Tensor,
    labeled_count: int,
    cfg: VAEConfig,
) -> VAELoss:
    """L_VAE of a batch whose first `labeled_count` rows are labeled, the rest unlabeled."""
    b = labeled_count
    transductive = _transductive(x, recon, mu, logvar, b, cfg)
    # VAAL eq. 2 / TA-VAAL eq. 5: the VAE wants D to call every point "labeled".
    adversarial = bce(disc_logits[:b], 1.0) + bce(disc_logits[b:], 1.0)
    total = cfg.recon_weight * transductive + cfg.adversary_weight * adversarial
    return VAELoss(total=total, transductive=transductive, adversarial=adversarial)


def plain_vae_objective(
    x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, labeled_count: int, cfg: VAEConfig
) -> VAELoss:
    """L_VAE without the adversarial term: the VAE of VAAL's frozen-VAE and 2-Wasserstein
    ablations (§5.1), trained as a plain beta-VAE on labeled + unlabeled batches."""
    b = labeled_count
    transductive = _transductive(x, recon, mu, logvar, b, cfg)
    zero = torch.zeros((), device=x.device, dtype=transductive.dtype)
    return VAELoss(
        total=cfg.recon_weight * transductive, transductive=transductive, adversarial=zero
    )


def discriminator_objective(disc_logits: Tensor, labeled_count: int) -> Tensor:
    """L_D (VAAL eq. 3 / TA-VAAL eq. 6): labeled rows -> 1, unlabeled rows -> 0."""
    b = labeled_count
    return bce(disc_logits[:b], 1.0) + bce(disc_logits[b:], 0.0)
