"""VAE + discriminator training and scoring (tavaal.adversarial) and the vaal / tavaal strategies.

Tiny 2-D vector data and 8x8 images keep every training run well under a second.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from tavaal.adversarial import (
    AdversarialData,
    InputBank,
    adversary_diagnostics,
    build_adversary,
    kl_divergence,
    normalise_rank,
    rank_statistics,
    roc_auc,
    score_rows,
    train_adversary,
    training_iterations,
    vae_loss_term,
    vae_objective,
)
from tavaal.config import ExperimentConfig, QueryConfig, VAEConfig
from tavaal.data import DatasetInfo, PreparedDataset
from tavaal.errors import CheckpointError, ConfigError
from tavaal.models.base import TaskModel
from tavaal.seeding import seed_everything
from tavaal.strategies import QueryContext, get_strategy, strategy_class
from tavaal.training import TrainedModels

QUIET = {"log": lambda message: None}


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-np.asarray(v, dtype=np.float64)))


# ------------------------------------------------------------------------------ pure functions


def test_kl_divergence_sum_and_mean_hand_values():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.zeros(2, 2)
    # Per element 0.5 * (mu^2 + e^lv - 1 - lv) = 0.5 * mu^2: 0.5, 0, 0, 2.
    assert kl_divergence(mu, logvar, "sum").item() == pytest.approx(2.5)
    assert kl_divergence(mu, logvar, "mean").item() == pytest.approx(0.625)
    # mu = 0, var = 2: 0.5 * (2 - 1 - ln 2) per element.
    one = kl_divergence(torch.zeros(3, 4), torch.full((3, 4), math.log(2.0)), "sum").item()
    assert one == pytest.approx(12 * 0.5 * (1 - math.log(2.0)), rel=1e-6)
    with pytest.raises(ValueError, match="kl_reduction"):
        kl_divergence(mu, logvar, "batchmean")


def test_vae_loss_term_is_element_mean_mse_plus_beta_kl():
    x = torch.zeros(2, 3)
    recon = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 4.0]])  # squared errors sum 5 + 16 = 21
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.zeros(2, 2)
    assert vae_loss_term(x, recon, mu, logvar, 0.5, "sum").item() == pytest.approx(21 / 6 + 1.25)
    assert vae_loss_term(x, recon, mu, logvar, 2.0, "mean").item() == pytest.approx(21 / 6 + 1.25)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=200) + 0.5 * labels, 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_edge_cases():
    assert roc_auc([1, 1, 0, 0], [3.0, 2.0, 1.0, 0.0]) == 1.0
    assert roc_auc([1, 0], [5.0, 5.0]) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_training_iterations_rule():
    assert training_iterations(VAEConfig(iterations=7), 100, 1000) == 7
    # ceil((100 + 1000) * 3 / 64) = ceil(51.5625)
    assert training_iterations(VAEConfig(epochs=3, batch_size=64), 100, 1000) == 52
    assert training_iterations(VAEConfig(epochs=1, batch_size=64), 64, 64) == 2


def test_normalise_rank_modes():
    r = np.array([-2.0, 0.0, 1.0, 5.0])
    # quantile: (mid-rank - 0.5) / n, the default.
    dec, dis = normalise_rank(r, "quantile")
    np.testing.assert_allclose(dec, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_array_equal(dis, dec)
    dec, _ = normalise_rank(np.array([3.0, 1.0, 3.0, 3.0]), "quantile")
    np.testing.assert_allclose(dec, [0.625, 0.125, 0.625, 0.625])  # ties share rank 3
    dec, dis = normalise_rank(r, "sigmoid")
    np.testing.assert_allclose(dec, _sigmoid(r))
    np.testing.assert_allclose(dis, _sigmoid(r))
    dec, dis = normalise_rank(r, "zscore_sigmoid")
    np.testing.assert_allclose(dec, _sigmoid((r - r.mean()) / r.std()))
    np.testing.assert_allclose(dis, dec)
    dec, dis = normalise_rank(r, "official")
    np.testing.assert_allclose(dec, _sigmoid(r))
    np.testing.assert_array_equal(dis, r)
    # A constant r: the std floor keeps it finite (all 0.5).
    dec, _ = normalise_rank(np.full(3, 7.0), "zscore_sigmoid")
    np.testing.assert_allclose(dec, 0.5)
    with pytest.raises(ValueError, match="rank_normalization"):
        normalise_rank(r, "softmax")
    # The method named tavaal is the paper's TA-VAAL unless a config asks otherwise (§3.1, §7.1).
    assert VAEConfig().rank_normalization == "sigmoid"


def test_quantile_normalisation_is_blind_to_shift_and_scale():
    r = np.random.default_rng(0).normal(size=200)
    base = normalise_rank(r, "quantile")
    for moved in (r + 40.0, 0.01 * r, 7.0 * r - 3.0, np.exp(r)):
        for got, want in zip(normalise_rank(moved, "quantile"), base, strict=True):
            np.testing.assert_array_equal(got, want)
    # The paper's sigmoid(r) is not: shifted by 6 it saturates (the issue seen on our runs).
    assert np.mean(normalise_rank(r - 6.0, "sigmoid")[1] < 0.01) > 0.5


def test_rank_statistics_hand_values():
    raw = np.array([1.0, 2.0, 3.0, 4.0])
    stats = rank_statistics(raw, np.array([0.005, 0.5, 0.98, 0.995]))
    assert stats["rank_raw_std"] == pytest.approx(np.sqrt(1.25))
    assert stats["rank_raw_iqr"] == pytest.approx(1.5)  # 3.25 - 1.75
    assert stats["rank_input_informative"] == pytest.approx(0.5)
    assert stats["rank_input_std"] == pytest.approx(np.std([0.005, 0.5, 0.98, 0.995]))


class ConstantDiscriminator(nn.Module):
    """D returning fixed logits per row (its input ignored)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float64)

    def forward(self, mu, r=None):
        return self.logits


def _softplus(v):
    return math.log1p(math.exp(v))


def test_vae_adversarial_target_is_labeled_for_the_unlabeled_batch_too():
    """VAAL eq. 2 / TA-VAAL eq. 5 and both official codes: BCE against 1 for L *and* U.

    With D's logits +1 on the labeled row and -3 on the unlabeled row, target 1 for both gives
    softplus(-1) + softplus(3); target 0 for U (the VAE helping D) would give softplus(-1) +
    softplus(-3).
    """
    x = torch.zeros(2, 3, dtype=torch.float64)
    cfg = VAEConfig(beta=0.0, recon_weight=0.0, adversary_weight=2.0)
    disc = ConstantDiscriminator([1.0, -3.0])
    loss = vae_objective(x, x, x[:, :1], x[:, :1], disc(x), 1, cfg)
    expected = _softplus(-1.0) + _softplus(3.0)
    assert float(loss.adversarial) == pytest.approx(expected, rel=1e-12)
    assert float(loss.total) == pytest.approx(2.0 * expected, rel=1e-12)
    assert float(loss.adversarial) != pytest.approx(_softplus(-1.0) + _softplus(-3.0))


def test_one_vae_step_moves_unlabeled_codes_towards_labeled():
    """One VAE update driven by the adversarial term alone raises the (fixed, initial) D's
    logit on the unlabeled batch: the VAE fools D, it does not help it."""
    data = cluster_data()
    cfg = VAEConfig(
        latent_dim=2,
        hidden=8,
        disc_hidden=8,
        batch_size=32,
        iterations=1,
        lr=0.05,
        beta=0.0,
        recon_weight=0.0,
        adversary_weight=1.0,
    )
    seed_everything(0, 1, "query/adversary/init")  # as train_adversary does before building
    initial_vae, initial_disc = build_adversary((2,), cfg, conditional=False)
    trained = train_adversary(data, cfg, seed=0, stage=1, **QUIET)
    x = data.bank[torch.from_numpy(data.unlabeled)]
    initial_vae.eval()
    trained.vae.eval()
    initial_disc.eval()
    with torch.no_grad():
        before = initial_disc(initial_vae.encode(x)[0]).mean()
        after = initial_disc(trained.vae.encode(x)[0]).mean()
    assert after > before + 1e-3


# ------------------------------------------------------------------------------ training on toys


def cluster_data() -> AdversarialData:
    """Labeled points from cluster A; candidates 20 from A and 80 from a far cluster B."""
    rng = np.random.default_rng(0)
    labeled = rng.normal([-3.0, 0.0], 0.5, size=(40, 2))
    a = rng.normal([-3.0, 0.0], 0.5, size=(20, 2))
    b = rng.normal([3.0, 0.0], 0.5, size=(80, 2))
    x = torch.tensor(np.r_[labeled, a, b], dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    return AdversarialData(InputBank.from_tensor(x), np.arange(40), np.arange(40, 140))


# Small beta: on 2-D data with beta = 1 the KL (and the adversarial term) make the VAE collapse
# towards the mean, which is what the diagnostics exist to show; here we want a working VAE.
CLUSTER_CONFIG = VAEConfig(
    latent_dim=2,
    hidden=32,
    disc_hidden=32,
    batch_size=32,
    iterations=200,
    lr=5e-3,
    disc_lr=5e-3,
    beta=0.1,
    adversary_weight=0.1,
)


@pytest.fixture(scope="module")
def cluster_run():
    data = cluster_data()
    trained = train_adversary(data, CLUSTER_CONFIG, seed=0, stage=1, **QUIET)
    cand = score_rows(trained, data, data.unlabeled)
    lab = score_rows(trained, data, data.labeled)
    return data, trained, cand, lab


def test_discriminator_learns_the_unlabeled_cluster(cluster_run):
    _data, trained, cand, lab = cluster_run
    p = _sigmoid(cand.logits)
    p_a, p_b = p[:20], p[20:]
    assert p_a.mean() > p_b.mean() + 0.3
    # D separates the labeled-like cluster from the other one.
    assert roc_auc(np.r_[np.ones(20), np.zeros(80)], cand.logits) > 0.8
    diag = adversary_diagnostics(trained, cand, lab)
    # 20 of 100 candidates look exactly like the labeled set: the best AUC is 0.2*0.5 + 0.8 = 0.9.
    assert diag["disc_auc"] > 0.75
    # VAAL Alg. 2: the 20 lowest P(labeled) are all from cluster B.
    assert (np.argsort(p, kind="stable")[:20] >= 20).all()
    # The VAE did not collapse: it reconstructs far better than the mean image.
    assert diag["vae_recon_mse"] < 0.5 * diag["mean_image_mse"]
    assert diag["latent_mu_std"] > 0.2


def test_discriminator_loss_decreases(cluster_run):
    _data, trained, _cand, _lab = cluster_run
    losses = np.asarray(trained.disc_losses)
    assert len(losses) == CLUSTER_CONFIG.iterations
    assert losses[-20:].mean() < losses[:20].mean() - 0.1
    # Chance level of L_D (two BCE terms at P = 0.5) is 2 ln 2.
    assert losses[-20:].mean() < 2 * math.log(2)


def test_diagnostics_hand_computed(cluster_run):
    data, trained, cand, lab = cluster_run
    x = data.bank.normalised[torch.from_numpy(data.unlabeled)].double()
    mean_image = ((x - x.mean(0)) ** 2).mean().item()
    assert cand.mean_image_mse == pytest.approx(mean_image, rel=1e-9)
    with torch.no_grad():
        mu, _ = trained.vae.encode(x.float())
        recon = trained.vae.decode(mu).double()
        logits = trained.discriminator(mu).double()
    assert cand.recon_mse == pytest.approx(((recon - x) ** 2).mean().item(), rel=1e-5)
    np.testing.assert_allclose(cand.logits, logits.numpy(), rtol=1e-6)
    diag = adversary_diagnostics(trained, cand, lab)
    np.testing.assert_allclose(diag["latent_mu_std"], mu.double().std(0, correction=0).mean())
    assert diag["disc_output_std"] == pytest.approx(_sigmoid(cand.logits).std())
    assert diag["iterations"] == CLUSTER_CONFIG.iterations
    assert diag["disc_loss_final"] == pytest.approx(np.mean(trained.disc_losses[-20:]))
    assert diag["vae_loss_final"] == pytest.approx(np.mean(trained.vae_losses[-20:]))


def test_training_is_deterministic():
    data = cluster_data()
    cfg = VAEConfig(latent_dim=2, hidden=8, disc_hidden=8, batch_size=16, iterations=15)
    one = train_adversary(data, cfg, seed=3, stage=2, **QUIET)
    two = train_adversary(data, cfg, seed=3, stage=2, **QUIET)
    other = train_adversary(data, cfg, seed=4, stage=2, **QUIET)
    assert one.disc_losses == two.disc_losses and one.vae_losses == two.vae_losses
    a = score_rows(one, data, data.unlabeled).logits
    np.testing.assert_array_equal(a, score_rows(two, data, data.unlabeled).logits)
    assert not np.array_equal(a, score_rows(other, data, data.unlabeled).logits)


def test_rank_condition_steers_the_discriminator():
    """Same input distribution for L and U: only the condition r tells them apart (eq. 3, 6)."""
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(140, 2)), dtype=torch.float32)
    r = np.r_[rng.uniform(0.0, 0.3, 40), rng.uniform(0.0, 0.3, 50), rng.uniform(0.7, 1.0, 50)]
    data = AdversarialData(
        InputBank.from_tensor(x), np.arange(40), np.arange(40, 140), decoder_r=r, disc_r=r
    )
    trained = train_adversary(data, CLUSTER_CONFIG, seed=0, stage=1, **QUIET)
    p = _sigmoid(score_rows(trained, data, data.unlabeled).logits)
    # Low-r candidates look labeled, high-r ones unlabeled: TA-VAAL picks high r (eq. 7).
    assert roc_auc(np.r_[np.ones(50), np.zeros(50)], p) > 0.9
    assert (np.argsort(p, kind="stable")[:25] >= 50).all()


# ------------------------------------------------------------------------------------- resuming


def image_data() -> AdversarialData:
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(48, 1, 8, 8)), dtype=torch.float32)
    return AdversarialData(InputBank.from_tensor(x), np.arange(16), np.arange(16, 48))


IMAGE_CONFIG = VAEConfig(
    latent_dim=4, base_channels=8, disc_hidden=16, batch_size=8, iterations=10, vae_steps=2
)


class Interrupt(Exception):
    pass


def stop_at(iteration: int):
    """An on_iteration hook that interrupts training after `iteration` (a preempted job)."""

    def hook(done: int) -> None:
        if done == iteration:
            raise Interrupt

    return hook


def test_resume_equals_uninterrupted_run(tmp_path):
    data = image_data()
    reference = train_adversary(data, IMAGE_CONFIG, seed=5, stage=1, **QUIET)
    path = tmp_path / "query.resume"

    with pytest.raises(Interrupt):
        train_adversary(
            data,
            IMAGE_CONFIG,
            seed=5,
            stage=1,
            checkpoint_path=path,
            checkpoint_every=3,
            on_iteration=stop_at(7),
            **QUIET,
        )
    state = torch.load(path, weights_only=True)
    assert state["iteration"] == 6
    assert set(state) >= {"vae", "discriminator", "vae_optimizer", "disc_optimizer", "rng_cpu"}
    messages = []
    resumed = train_adversary(
        data,
        IMAGE_CONFIG,
        seed=5,
        stage=1,
        checkpoint_path=path,
        checkpoint_every=3,
        log=messages.append,
    )
    assert resumed.resumed_from == 6
    assert any("resumed" in m for m in messages)
    assert not path.exists()  # removed once training completed
    assert resumed.disc_losses == reference.disc_losses
    assert resumed.vae_losses == reference.vae_losses
    for name, tensor in reference.vae.state_dict().items():
        assert torch.equal(tensor, resumed.vae.state_dict()[name]), name
    np.testing.assert_array_equal(
        score_rows(resumed, data, data.unlabeled).logits,
        score_rows(reference, data, data.unlabeled).logits,
    )


def test_checkpoint_of_another_query_is_ignored_and_corrupt_one_reported(tmp_path):
    data = image_data()
    path = tmp_path / "query.resume"
    with pytest.raises(Interrupt):
        train_adversary(
            data,
            IMAGE_CONFIG,
            seed=5,
            stage=1,
            checkpoint_path=path,
            checkpoint_every=2,
            on_iteration=stop_at(3),
            **QUIET,
        )
    assert path.exists()
    messages = []
    other = train_adversary(
        data, IMAGE_CONFIG, seed=6, stage=1, checkpoint_path=path, log=messages.append
    )
    assert other.resumed_from == 0 and any("different query" in m for m in messages)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="query.resume"):
        train_adversary(data, IMAGE_CONFIG, seed=5, stage=1, checkpoint_path=path, **QUIET)


def image_info(images: np.ndarray, mean, std) -> DatasetInfo:
    """A two-class image dataset's record for uint8 (N, H, W, C) `images`."""
    n, h, w, c = images.shape
    return DatasetInfo(
        name="tiny",
        kind="image",
        num_classes=2,
        classes=("a", "b"),
        input_shape=(c, h, w),
        mean=mean,
        std=std,
        n_train=n,
        n_test=0,
    )


def test_input_bank_raw_rows_normalise_like_load_inputs():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)
    info = image_info(images, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    indices = np.array([3, 7, 8, 20, 29])
    cached = InputBank.load(images, indices, info, "cpu")
    raw = InputBank.load(images, indices, info, "cpu", max_cached_bytes=0)
    assert cached.raw is None and raw.normalised is None
    positions = torch.tensor([4, 0, 2, 2])
    torch.testing.assert_close(raw[positions], cached[positions], rtol=0, atol=0)
    expected = (images[[29, 3, 8, 8]].transpose(0, 3, 1, 2) / 255.0 - 0.4) / 0.25
    np.testing.assert_allclose(cached[positions][:, 1].numpy(), expected[:, 1], atol=1e-6)


def test_input_bank_resizes_images_for_the_vae_in_both_storages():
    """vae.input_size: the adversary sees an antialiased, downsampled copy of the images."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
    info = image_info(images, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    indices = np.array([9, 2, 5, 11])
    cached = InputBank.load(images, indices, info, "cpu", size=8)
    raw = InputBank.load(images, indices, info, "cpu", max_cached_bytes=0, size=8)
    assert cached.normalised.shape == (4, 3, 8, 8) and raw.raw.shape == (4, 8, 8, 3)
    everything = torch.arange(4)
    torch.testing.assert_close(raw[everything], cached[everything], rtol=0, atol=0)
    # Each 2x2 block of a constant image stays that constant; a row keeps its sample's content.
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(images[indices]).permute(0, 3, 1, 2).float(),
        size=(8, 8),
        mode="bilinear",
        antialias=True,
    )
    expected = (reference.round().clamp(0, 255) / 255.0 - 0.5) / 0.25
    torch.testing.assert_close(cached[everything], expected, rtol=0, atol=1e-6)
    # The stored size (or 0) keeps the rows as they are.
    same = InputBank.load(images, indices, info, "cpu", size=16)
    torch.testing.assert_close(
        same[everything], InputBank.load(images, indices, info, "cpu")[everything]
    )


def test_input_bank_gathers_large_rows_a_few_at_a_time(monkeypatch):
    """Rows are gathered at most BANK_CHUNK_BYTES (as float32) at a time: 1376x688 images 47 at a
    time, not 4,096 (46 GB on the device); the bank is the same whatever the chunk."""
    from tavaal.adversarial import data as bank_data

    assert bank_data.bank_chunk_rows((3, 688, 1376)) == 47
    assert bank_data.bank_chunk_rows((3, 32, 32)) == bank_data.BANK_CHUNK
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
    info = image_info(images, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    indices = np.array([9, 2, 5, 11, 0, 7])
    whole = [InputBank.load(images, indices, info, "cpu", size=s) for s in (0, 8)]
    gathered = []
    real = bank_data._resized_rows

    def spy(x, part, size, device):
        gathered.append(len(part))
        return real(x, part, size, device)

    monkeypatch.setattr(bank_data, "_resized_rows", spy)
    monkeypatch.setattr(bank_data, "BANK_CHUNK_BYTES", 2 * 4 * 3 * 16 * 16)
    chunked = [InputBank.load(images, indices, info, "cpu", size=s) for s in (0, 8)]
    assert gathered == [2, 2, 2]
    everything = torch.arange(len(indices))
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a[everything], b[everything], rtol=0, atol=0)


def test_vae_input_size_is_validated_and_hashed_only_when_set():
    from tavaal.strategies import method_hash

    # rank_normalization and init set to the defaults of that time (quantile and kaiming;
    # sigmoid and official since issue 22).
    old_defaults = {"rank_normalization": "quantile", "init": "kaiming"}
    base = {
        "dataset": "digits",
        "model": "digits_cnn",
        "methods": ["vaal", "tavaal"],
        "vae": old_defaults,
    }
    exp = ExperimentConfig.from_dict("x", base)
    # Computed before vae.input_size existed: results made then keep their hashes.
    assert (method_hash(exp, "vaal"), method_hash(exp, "tavaal")) == (
        "ad877df6bf7dd964",
        "948025de90ec9224",
    )
    smaller = ExperimentConfig.from_dict("x", {**base, "vae": {**old_defaults, "input_size": 16}})
    assert smaller.select("vae")["vae"]["input_size"] == 16
    assert method_hash(smaller, "vaal") != method_hash(exp, "vaal")
    with pytest.raises(
        ConfigError, match=r"vae\.input_size: 0 \(as stored\) or a side in 8\.\.512"
    ):
        ExperimentConfig.from_dict("x", {**base, "vae": {"input_size": 4}})


# ------------------------------------------------------------------------------- the strategies


def cluster_dataset() -> PreparedDataset:
    """Indices 0-59 in cluster A, 60-139 in cluster B (2-D, unit-normalised)."""
    rng = np.random.default_rng(4)
    x = np.r_[rng.normal([-1.5, 0.0], 0.3, (60, 2)), rng.normal([1.5, 0.0], 0.3, (80, 2))]
    info = DatasetInfo(
        name="toy",
        kind="vector",
        num_classes=2,
        classes=("a", "b"),
        input_shape=(2,),
        mean=(0.0, 0.0),
        std=(1.0, 1.0),
        n_train=140,
        n_test=0,
    )
    return PreparedDataset(
        info=info,
        x_train=x.astype(np.float32),
        y_train=(np.arange(140) >= 60).astype(np.int64),
        x_test=np.zeros((0, 2), np.float32),
        y_test=np.zeros(0, np.int64),
    )


def make_context(vae: VAEConfig, models=None, method="vaal", **extra) -> QueryContext:
    labeled = np.arange(0, 40)  # all from cluster A
    unlabeled = np.arange(40, 140)
    candidates = np.r_[np.arange(40, 60), np.arange(60, 140, 2)]  # 20 A + 40 B
    exp = ExperimentConfig(
        name="toy",
        dataset="moons",
        model="mlp",
        budget=10,
        vae=vae,
        query=QueryConfig(inference_batch_size=32),
    )
    ctx = QueryContext(
        experiment=exp,
        method=method,
        seed=0,
        stage=1,
        dataset=cluster_dataset(),
        labeled=labeled,
        candidates=candidates,
        unlabeled=unlabeled,
        budget=10,
        device=torch.device("cpu"),
        models=models,
        log=lambda message: None,
    )
    for key, value in extra.items():
        setattr(ctx, key, value)
    return ctx


STRATEGY_CONFIG = VAEConfig(
    latent_dim=2,
    hidden=32,
    disc_hidden=32,
    batch_size=32,
    epochs=50,
    lr=5e-3,
    disc_lr=5e-3,
    beta=0.1,
    adversary_weight=0.1,
)
RANK_DIAGNOSTICS = {"rank_raw_std", "rank_raw_iqr", "rank_input_std", "rank_input_informative"}
DIAGNOSTICS = {
    "vae_recon_mse",
    "mean_image_mse",
    "latent_mu_std",
    "disc_auc",
    "disc_output_std",
    "vae_loss_final",
    "disc_loss_final",
    "iterations",
    "train_seconds",
}


def test_vaal_query_contract_and_selection():
    strategy = get_strategy("vaal")
    assert strategy_class("vaal").uses_task_model is False
    ctx = make_context(STRATEGY_CONFIG)
    result = strategy.query(ctx)
    chosen = result.chosen
    assert len(chosen) == 10 and len(set(chosen.tolist())) == 10
    assert set(chosen.tolist()) <= set(ctx.candidates.tolist())
    assert (chosen >= 60).all()  # all from the cluster the labeled set does not cover
    table = result.scores
    assert table["index"].tolist() == ctx.candidates.tolist()
    np.testing.assert_array_equal(table["score"], -table["disc_logit"])
    np.testing.assert_allclose(table["disc_output"], _sigmoid(table["disc_logit"]), rtol=1e-12)
    np.testing.assert_allclose(
        table["unlabeled_probability"], 1.0 - table["disc_output"], atol=1e-12
    )
    assert table["chosen"].sum() == 10
    assert set(table.loc[table["chosen"], "index"]) == set(chosen.tolist())
    assert DIAGNOSTICS <= set(result.diagnostics)
    assert all(math.isfinite(v) for v in result.diagnostics.values())
    # subset rule: ceil((40 + 60) * 50 / 32)
    assert result.diagnostics["iterations"] == 157
    again = strategy.query(make_context(STRATEGY_CONFIG))
    np.testing.assert_array_equal(again.chosen, chosen)
    assert again.scores.equals(table)


def test_vaal_trains_on_the_whole_pool_and_resumes_through_the_context(tmp_path):
    cfg = VAEConfig(latent_dim=2, hidden=8, disc_hidden=8, batch_size=16, epochs=1)
    pool = get_strategy("vaal").query(make_context(dataclasses.replace(cfg, train_on="pool")))
    assert pool.diagnostics["iterations"] == math.ceil((40 + 100) / 16)
    plain = get_strategy("vaal").query(make_context(cfg))
    path = tmp_path / "q.resume"
    resumable = get_strategy("vaal").query(make_context(cfg, resume_path=path, checkpoint_every=2))
    assert not path.exists()
    assert resumable.scores.equals(plain.scores)


class InputTaps(TaskModel):
    """A 'task model' whose only tap is its input, so a ranker can be written by hand."""

    def __init__(self) -> None:
        super().__init__(features_dim=2, num_classes=2, dropout=0.0)

    def forward_features(self, x):
        return x, [x]


class FirstCoordinateRanker(nn.Module):
    """Predicted loss 3 * x[:, 1]: high for candidates with a large second coordinate."""

    def forward(self, features):
        return 3.0 * features[0][:, 1]


def test_selection_ranks_logits_not_rounded_probabilities(monkeypatch):
    """Logits -40, -50, -60 all give 1 - P(labeled) == 1.0 in float64: ranking on that would
    tie them and fall back to the smallest index. Ranking on the logit picks -60 first."""
    import tavaal.strategies._adversarial as module

    cfg = VAEConfig(latent_dim=2, hidden=8, disc_hidden=8, batch_size=16, iterations=1)
    ctx = make_context(cfg, budget=3)
    crafted = np.full(len(ctx.candidates), 5.0)
    crafted[[2, 30, 55]] = [-40.0, -50.0, -60.0]  # the most confident at the largest index
    real_score_rows = module.score_rows

    def fake_score_rows(trained, data, positions, device=None, batch_size=512):
        scores = real_score_rows(trained, data, positions, device, batch_size)
        if len(positions) == len(ctx.candidates):
            scores = dataclasses.replace(scores, logits=crafted.copy())
        return scores

    monkeypatch.setattr(module, "score_rows", fake_score_rows)
    result = get_strategy("vaal").query(ctx)
    assert result.chosen.tolist() == ctx.candidates[[55, 30, 2]].tolist()
    picked = result.scores.set_index("index").loc[result.chosen]
    assert (picked["unlabeled_probability"] == 1.0).all()  # reported, tied by rounding
    assert picked["disc_logit"].tolist() == [-60.0, -50.0, -40.0]


@pytest.mark.parametrize("mode", ["quantile", "sigmoid", "zscore_sigmoid", "official"])
def test_tavaal_columns_follow_the_rank_normalisation(mode):
    models = TrainedModels(models=[InputTaps().eval()], ranker=FirstCoordinateRanker())
    cfg = VAEConfig(
        latent_dim=2,
        hidden=8,
        disc_hidden=8,
        batch_size=16,
        iterations=10,
        rank_normalization=mode,
    )
    ctx = make_context(cfg, models=models, method="tavaal")
    result = get_strategy("tavaal").query(ctx)
    table = result.scores
    x = ctx.dataset.x_train
    r = 3.0 * x[ctx.candidates, 1].astype(np.float64)
    np.testing.assert_allclose(table["predicted_loss"], r, rtol=1e-6)
    # Statistics over labeled + training pool (here the candidates).
    everything = 3.0 * x[np.union1d(ctx.labeled, ctx.candidates), 1].astype(np.float64)
    if mode == "sigmoid":
        expected = _sigmoid(r)
    elif mode == "official":
        expected = r
    elif mode == "quantile":
        below = (everything[None, :] < r[:, None]).sum(1)
        expected = (below + 0.5) / len(everything)  # no ties: rank = below + 1
    else:
        expected = _sigmoid((r - everything.mean()) / everything.std())
    np.testing.assert_allclose(table["rank_input"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table["score"], -table["disc_logit"])
    assert len(set(result.chosen.tolist())) == 10
    assert DIAGNOSTICS | RANK_DIAGNOSTICS <= set(result.diagnostics)


class AffineRanker(nn.Module):
    """FirstCoordinateRanker moved and stretched: a * 3 * x[:, 1] + b."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, features):
        return self.scale * 3.0 * features[0][:, 1] + self.shift


def test_quantile_selection_is_blind_to_shift_and_scale_of_the_ranker():
    """Both ranker losses ignore r's offset (and eq. 1 much of its scale), so the quantile
    conditioning does too: the same picks, rank inputs and D outputs for a*r + b."""
    cfg = VAEConfig(
        latent_dim=2,
        hidden=8,
        disc_hidden=8,
        batch_size=16,
        iterations=20,
        rank_normalization="quantile",
    )
    results = []
    for ranker in (FirstCoordinateRanker(), AffineRanker(4.0, 8.0), AffineRanker(0.25, -30.0)):
        models = TrainedModels(models=[InputTaps().eval()], ranker=ranker)
        results.append(get_strategy("tavaal").query(make_context(cfg, models, "tavaal")))
    for other in results[1:]:
        np.testing.assert_array_equal(other.chosen, results[0].chosen)
        for column in ("rank_input", "disc_logit"):
            np.testing.assert_array_equal(other.scores[column], results[0].scores[column])
    # Quantiles (rank - 0.5) / 100 of the 100 rows: all but the two extremes inside (0.01, 0.99).
    assert results[0].diagnostics["rank_input_informative"] == pytest.approx(0.98)


def test_tavaal_needs_the_task_model_and_ranker():
    cls = strategy_class("tavaal")
    assert cls.uses_task_model and cls.recipe.ranker_loss == "ranking"
    cfg = VAEConfig(latent_dim=2, hidden=8, disc_hidden=8, batch_size=16, iterations=2)
    with pytest.raises(CheckpointError, match="tavaal"):
        get_strategy("tavaal").query(make_context(cfg, method="tavaal"))
    models = TrainedModels(models=[InputTaps().eval()], ranker=None)
    with pytest.raises(CheckpointError, match="ranker"):
        get_strategy("tavaal").query(make_context(cfg, models=models, method="tavaal"))
