"""The ablations of VAAL §5.1 and TA-VAAL §5.1 as methods: the 2-Wasserstein heuristic against
hand computations, the pixel discriminator's shapes, what each training variant updates, and
the queries' picks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from tavaal.adversarial import (
    ADVERSARIAL,
    FROZEN_VAE,
    PIXEL_DISCRIMINATOR,
    PLAIN_VAE,
    AdversarialData,
    InputBank,
    score_rows,
    train_adversary,
    wasserstein_to_centroid,
)
from tavaal.adversarial.objectives import plain_vae_objective, vae_loss_term
from tavaal.config import VAEConfig
from tavaal.models import PixelDiscriminator
from tavaal.strategies import get_strategy, strategy_class, trains_discriminator
from tavaal.training import MARGIN_RANKER, PLAIN

CFG = VAEConfig(latent_dim=4, base_channels=4, disc_hidden=16, batch_size=8, iterations=6)


def test_wasserstein_closed_form_by_hand():
    labeled_mu = np.array([[0.0, 0.0], [2.0, 0.0]])
    labeled_sigma = np.array([[1.0, 1.0], [1.0, 3.0]])
    # Centroid: mu (1, 0), sigma (1, 2).
    mu = np.array([[4.0, 4.0], [1.0, 0.0]])
    sigma = np.array([[2.0, 2.0], [1.0, 2.0]])
    distance = wasserstein_to_centroid(mu, sigma, labeled_mu, labeled_sigma)
    # (4-1)^2 + (4-0)^2 + (2-1)^2 + (2-2)^2 = 26; the centroid itself is at distance 0.
    np.testing.assert_allclose(distance, [math.sqrt(26.0), 0.0])


@pytest.mark.parametrize("seed", range(3))
def test_wasserstein_equals_the_general_gaussian_formula(seed):
    """Givens & Shortt: W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2), here for
    diagonal covariances S = diag(sigma^2)."""
    rng = np.random.default_rng(seed)
    mu, sigma = rng.normal(size=(1, 3)), rng.uniform(0.1, 2.0, size=(1, 3))
    lab_mu, lab_sigma = rng.normal(size=(4, 3)), rng.uniform(0.1, 2.0, size=(4, 3))
    centre_mu, centre_sigma = lab_mu.mean(0), lab_sigma.mean(0)
    s1, s2 = np.diag(sigma[0] ** 2), np.diag(centre_sigma**2)
    root2 = sqrtm(s2).real
    trace = np.trace(s1 + s2 - 2 * sqrtm(root2 @ s1 @ root2).real)
    expected = math.sqrt(((mu[0] - centre_mu) ** 2).sum() + trace)
    assert wasserstein_to_centroid(mu, sigma, lab_mu, lab_sigma)[0] == pytest.approx(expected)


def test_pixel_discriminator_shapes():
    disc = PixelDiscriminator((3, 32, 32), hidden=32, depth=3)
    assert disc.net[0].in_features == 3 * 32 * 32
    linear = [m for m in disc.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [32, 32, 1]
    assert disc(torch.zeros(5, 3, 32, 32)).shape == (5,)
    with pytest.raises(ValueError, match=r"expects \(3, 32, 32\)"):
        disc(torch.zeros(5, 1, 28, 28))


def _data(n_labeled: int = 16, n_unlabeled: int = 32) -> AdversarialData:
    x = torch.randn(n_labeled + n_unlabeled, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return AdversarialData(
        bank=InputBank.from_tensor(x),
        labeled=np.arange(n_labeled),
        unlabeled=np.arange(n_labeled, n_labeled + n_unlabeled),
    )


def _params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.state_dict().values()]


def test_variants_train_what_they_say():
    data = _data()
    runs = {
        v: train_adversary(data, CFG, seed=1, stage=0, variant=v, log=lambda _: None)
        for v in (ADVERSARIAL, PIXEL_DISCRIMINATOR, FROZEN_VAE, PLAIN_VAE)
    }
    assert runs[PIXEL_DISCRIMINATOR].vae is None and not runs[PIXEL_DISCRIMINATOR].vae_losses
    assert runs[PLAIN_VAE].discriminator is None and not runs[PLAIN_VAE].disc_losses
    # Frozen VAE: the schedule twice, first the VAE, then D.
    frozen = runs[FROZEN_VAE]
    assert frozen.iterations == 12
    assert len(frozen.vae_losses) == 6 and len(frozen.disc_losses) == 6
    # Its VAE is the plain VAE (same seed, same batches, no adversarial term) ...
    for a, b in zip(_params(frozen.vae), _params(runs[PLAIN_VAE].vae), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ... which is not the adversarially trained one.
    differs = [
        not torch.equal(a, b)
        for a, b in zip(_params(frozen.vae), _params(runs[ADVERSARIAL].vae), strict=True)
    ]
    assert any(differs)
    scores = score_rows(runs[PLAIN_VAE], data, np.arange(16, 48))
    assert np.isnan(scores.logits).all() and scores.sigma.shape == (32, 4)
    pixel = score_rows(runs[PIXEL_DISCRIMINATOR], data, np.arange(16, 48))
    assert np.isfinite(pixel.logits).all() and pixel.mu.shape == (32, 0)


def test_frozen_vae_is_not_updated_while_d_trains(monkeypatch):
    import tavaal.adversarial.training as training

    built = {}
    original = training.build_adversary

    def keep(*args, **kwargs):
        built["vae"], built["disc"] = original(*args, **kwargs)
        return built["vae"], built["disc"]

    monkeypatch.setattr(training, "build_adversary", keep)
    snapshots = {}

    def remember(iteration):
        if iteration in (6, 12):  # end of the VAE phase, end of the D phase
            snapshots[iteration] = (_params(built["vae"]), _params(built["disc"]))

    train_adversary(
        _data(),
        CFG,
        seed=1,
        stage=0,
        variant=FROZEN_VAE,
        on_iteration=remember,
        log=lambda _: None,
    )
    vae_after_phase_one, disc_after_phase_one = snapshots[6]
    vae_at_end, disc_at_end = snapshots[12]
    for a, b in zip(vae_after_phase_one, vae_at_end, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # D trained in the second phase.
    assert any(
        not torch.equal(a, b) for a, b in zip(disc_after_phase_one, disc_at_end, strict=True)
    )


def test_frozen_vae_resumes_across_the_phase_change(tmp_path):
    data = _data()
    whole = train_adversary(data, CFG, seed=2, stage=1, variant=FROZEN_VAE, log=lambda _: None)
    path = tmp_path / "adversary.resume"

    class Stop(Exception):
        pass

    def stop_at(iteration):
        if iteration == 8:
            raise Stop

    with pytest.raises(Stop):
        train_adversary(
            data,
            CFG,
            seed=2,
            stage=1,
            variant=FROZEN_VAE,
            checkpoint_path=path,
            checkpoint_every=4,
            on_iteration=stop_at,
            log=lambda _: None,
        )
    assert path.exists()
    resumed = train_adversary(
        data,
        CFG,
        seed=2,
        stage=1,
        variant=FROZEN_VAE,
        checkpoint_path=path,
        checkpoint_every=4,
        log=lambda _: None,
    )
    assert resumed.resumed_from == 8 and not path.exists()
    for a, b in zip(_params(whole.discriminator), _params(resumed.discriminator), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_plain_vae_objective_is_the_transductive_term_only():
    torch.manual_seed(0)
    x, recon = torch.randn(8, 3), torch.randn(8, 3)
    mu, logvar = torch.randn(8, 2), torch.randn(8, 2)
    cfg = VAEConfig(beta=0.5, recon_weight=2.0)
    loss = plain_vae_objective(x, recon, mu, logvar, 3, cfg)
    expected = vae_loss_term(x[:3], recon[:3], mu[:3], logvar[:3], 0.5, "mean") + vae_loss_term(
        x[3:], recon[3:], mu[3:], logvar[3:], 0.5, "mean"
    )
    torch.testing.assert_close(loss.total, 2.0 * expected)
    assert float(loss.adversarial) == 0.0


def test_ablation_methods_are_registered_with_their_recipes():
    expected = {
        "vaal_no_vae": (PLAIN, False, True),
        "vaal_frozen_vae": (PLAIN, False, True),
        "vae_wasserstein": (PLAIN, False, False),
        "vaal_lloss": (MARGIN_RANKER, True, True),
    }
    for name, (recipe, uses_model, discriminator) in expected.items():
        cls = strategy_class(name)
        assert cls.recipe == recipe, name
        assert cls.uses_task_model is uses_model, name
        assert trains_discriminator(cls) is discriminator, name
        assert cls.query_reads == ("vae",), name


def test_wasserstein_query_picks_the_farthest_codes():
    from test_strategies import make_context, make_dataset, make_models

    dataset = make_dataset(80, 3, data_seed=5)
    ctx = make_context("vae_wasserstein", dataset, np.arange(20), np.arange(20, 80), budget=7)
    result = get_strategy("vae_wasserstein").query(ctx)
    table = result.scores.set_index("index")
    np.testing.assert_array_equal(table["score"], table["wasserstein"])
    farthest = table["wasserstein"].sort_values(ascending=False).index[:7]
    assert sorted(result.chosen.tolist()) == sorted(farthest.tolist())
    assert make_models("vae_wasserstein", 3, 0) is None


def test_vaal_lloss_conditions_on_the_margin_loss_module():
    from test_strategies import make_context, make_dataset, make_models

    dataset = make_dataset(60, 3, data_seed=6)
    models = make_models("vaal_lloss", 3, model_seed=1)
    ctx = make_context(
        "vaal_lloss", dataset, np.arange(15), np.arange(15, 60), budget=5, models=models
    )
    table = get_strategy("vaal_lloss").query(ctx).scores
    # Conditional: the Ranker's r and what D got as r are in the table (TA-VAAL's columns).
    assert {"predicted_loss", "rank_input", "disc_logit"} <= set(table.columns)
    np.testing.assert_allclose(table["score"], -table["disc_logit"])
