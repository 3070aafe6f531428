"""Our VAAL / TA-VAAL steps equal the official codes', tensor by tensor (docs/methods.md,
"Equal to the official codes").

tests/official/*.json were written by tests/official/make_official_goldens.py, which runs the
official VAAL (sinhasam/vaal 67263f3) and TA-VAAL (cubeyoung/TA-VAAL 1161071) code in float64
from deterministic weights and batches (tests/official/deterministic.py). Here the same weights
are mapped onto our modules, the same batches and noise go through our update steps, and every
loss, gradient, updated parameter and batch-norm statistic is compared through its summary
(sum, norm, probe product) with a relative tolerance of 1e-9 of the tensor's scale. Each test
names the official behaviour it has to reproduce where ours deliberately differs (separate
batch-norm passes for L and U, train-mode scoring), so that the difference is exactly that.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tavaal.adversarial.conditioning import normalise_rank
from tavaal.adversarial.objectives import vae_objective
from tavaal.adversarial.training import disc_update, vae_update
from tavaal.config import RankerConfig, VAEConfig
from tavaal.models import build_discriminator, build_ranker, build_task_model, build_vae
from tavaal.strategies.base import top_k
from tavaal.tasks.classification import ClassificationTask
from tavaal.training import RANKING_RANKER, train_step

REPO = Path(__file__).resolve().parent.parent
OFFICIAL = REPO / "tests" / "official"
sys.path.insert(0, str(OFFICIAL))
from deterministic import parameter_value, summary, uniform  # noqa: E402

RTOL = 1e-9
SHAPE = (3, 32, 32)
LR = 5e-4  # both official codes' Adam learning rate for the VAE and D


def golden(name: str) -> dict:
    return json.loads((OFFICIAL / f"{name}.json").read_text())


# ------------------------------------------------------------------ official names -> ours


def _vae_modules() -> dict[str, str]:
    """Official VAE module paths -> ours (32x32 input, 128 base channels)."""
    names = {"fc_mu": "fc_mu", "fc_logvar": "fc_logvar", "decoder.0": "decoder.0"}
    for k, (conv, bn) in enumerate([(0, 1), (3, 4), (6, 7), (9, 10)]):
        names[f"encoder.{conv}"], names[f"encoder.{bn}"] = f"encoder.{k}.0", f"encoder.{k}.1"
    for k, (deconv, bn) in enumerate([(2, 3), (5, 6), (8, 9)]):
        names[f"decoder.{deconv}"], names[f"decoder.{bn}"] = (
            f"decoder.{k + 2}.0",
            f"decoder.{k + 2}.1",
        )
    names["decoder.11"] = "decoder.5"  # ConvTranspose2d(128, C, 1) there, Conv2d(128, C, 1) here
    return names


def _backbone_modules() -> dict[str, str]:
    """TA-VAAL's ResNet18 / LossNet module paths -> our resnet18 / LossPredictionModule."""
    names = {"conv1": "stem.0", "bn1": "stem.1", "linear": "classifier"}
    for stage in range(4):
        for block in range(2):
            for layer in ("conv1", "bn1", "conv2", "bn2", "shortcut.0", "shortcut.1"):
                names[f"layer{stage + 1}.{block}.{layer}"] = f"stages.{stage}.{block}.{layer}"
    return names


LOSSNET_MODULES = {f"FC{k + 1}": f"branches.{k}.0" for k in range(4)} | {"linear": "head"}
TRANSPOSED = {"decoder.11.weight"}  # (in, out, 1, 1) there, (out, in, 1, 1) here


def ours_name(official: str, modules: dict[str, str]) -> str:
    path, leaf = official.rsplit(".", 1)
    return f"{modules[path]}.{leaf}" if path in modules else official


def to_official_layout(official: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.transpose(0, 1) if official in TRANSPOSED else tensor


def load_official_weights(model, shapes: dict[str, list[int]], modules: dict[str, str]) -> None:
    """Set every parameter of `model` to the deterministic value of its official counterpart."""
    params = dict(model.named_parameters())
    assert len(params) == len(shapes), "one official parameter for each of ours"
    with torch.no_grad():
        for official, shape in shapes.items():
            value = to_official_layout(official, parameter_value(official, tuple(shape)))
            params[ours_name(official, modules)].copy_(value)


def assert_summary(official_name: str, tensor: torch.Tensor, expected: list[float], what: str):
    found = summary(official_name, tensor)
    # Relative to the tensor's scale: |sum| and |probe product| are at most norm * sqrt(n).
    scale = expected[1] * math.sqrt(tensor.numel()) + 1e-300
    for got, want, kind in zip(found, expected, ("sum", "norm", "probe"), strict=True):
        assert abs(got - want) <= RTOL * scale, f"{what} {official_name} {kind}: {got} vs {want}"


def assert_step(models: dict, modules: dict, step: dict, label: str) -> None:
    """Gradients and updated values of every parameter an official optimizer step touched."""
    for full, expected in step["grads"].items():
        prefix, official = full.split(".", 1)
        p = dict(models[prefix].named_parameters())[ours_name(official, modules[prefix])]
        assert_summary(full, to_official_layout(official, p.grad), expected, f"{label} grad")
    for full, expected in step["params"].items():
        prefix, official = full.split(".", 1)
        p = dict(models[prefix].named_parameters())[ours_name(official, modules[prefix])]
        assert_summary(full, to_official_layout(official, p), expected, f"{label} value")


def assert_close(got: float, want: float, what: str) -> None:
    assert abs(got - want) <= RTOL * max(1.0, abs(want)), f"{what}: {got} vs {want}"


def adversary(gold: dict, cond_dim: int):
    vae = build_vae(SHAPE, gold["latent"], cond_dim, base_channels=128).double()
    disc = build_discriminator(gold["latent"], cond_dim, hidden=512, depth=3).double()
    load_official_weights(vae, gold["vae_parameters"], _vae_modules())
    load_official_weights(disc, gold["disc_parameters"], {})
    return vae, disc


def noise(gold: dict, update: int) -> torch.Tensor:
    """eps of one VAE update: its labeled rows, then its unlabeled rows."""
    b, latent = gold["batch"], gold["latent"]
    parts = gold["eps"][2 * update : 2 * update + 2]
    return torch.cat([torch.tensor(part, dtype=torch.float64).reshape(b, latent) for part in parts])


ADVERSARY_MODULES = {"vae": _vae_modules(), "disc": {}}


# ------------------------------------------------------------------------------------ VAAL


def test_vaal_vae_and_discriminator_updates_equal_the_official_code():
    """Two VAE updates then one D update on the last batch (VAAL's solver.py, num_vae_steps 2):
    losses, gradients, updated weights and encoder batch-norm statistics, with L and U through
    the VAE in separate passes as there (ours joins them: the one difference, by design)."""
    gold = golden("vaal")
    b = gold["batch"]
    vae, disc = adversary(gold, cond_dim=0)
    cfg = VAEConfig(latent_dim=gold["latent"], batch_size=b, kl_reduction="sum")
    labeled = uniform("vaal/labeled", (2 * b, *SHAPE))
    unlabeled = uniform("vaal/unlabeled", (2 * b, *SHAPE))
    opt_vae = torch.optim.Adam(vae.parameters(), lr=LR)
    opt_disc = torch.optim.Adam(disc.parameters(), lr=LR)
    models = {"vae": vae, "disc": disc}
    vae.train()
    disc.train()
    # Our default, one pass for L and U together, is what differs (a copy: batch norm in train
    # mode updates its running statistics).
    joint = _joint_pass_loss(copy.deepcopy(vae), disc, labeled[:b], unlabeled[:b], gold, cfg)
    assert abs(joint - gold["losses"][1]) > 1e-6 * gold["losses"][1]
    for update in range(2):
        rows = slice(update * b, (update + 1) * b)
        x = torch.cat([labeled[rows], unlabeled[rows]])
        loss = vae_update(
            vae, disc, opt_vae, x, None, None, noise(gold, update), b, cfg, separate_batch_norm=True
        )
        assert_close(float(loss.total.detach()), gold["losses"][1 + update], f"VAE loss {update}")
        assert_step(models, ADVERSARY_MODULES, gold["steps"][update], f"VAE update {update}")
    disc_loss = disc_update(vae, disc, opt_disc, x, None, b, separate_batch_norm=True)
    assert_close(float(disc_loss.detach()), gold["losses"][3], "D loss")
    assert_step(models, ADVERSARY_MODULES, gold["steps"][2], "D update")

    # The sampler (sampler.py) scores with the VAE left in train mode: batch statistics of each
    # batch of 4. Ours in that mode gives the same P(labeled) and picks the same indices.
    pool = uniform("vaal/pool", (12, *SHAPE))
    sampler = gold["sampler"]
    logits = _train_mode_logits(vae, disc, pool, sampler["pool_batch"])
    np.testing.assert_allclose(
        torch.sigmoid(logits).numpy(), sampler["probabilities"], rtol=RTOL, atol=0
    )
    chosen = top_k(np.arange(len(pool)), -logits.numpy(), sampler["budget"])
    assert chosen.tolist() == sampler["chosen"]
    _assert_encoder_statistics(vae, gold)  # the train-mode scoring updated them too


@torch.no_grad()
def _joint_pass_loss(vae, disc, labeled, unlabeled, gold, cfg) -> float:
    x = torch.cat([labeled, unlabeled])
    mu, logvar = vae.encode(x)
    recon = vae.decode(mu + noise(gold, 0) * torch.exp(0.5 * logvar))
    return float(vae_objective(x, recon, mu, logvar, disc(mu), len(labeled), cfg).total)


def _assert_encoder_statistics(vae, gold: dict) -> None:
    """Running batch-norm statistics of the encoder (the decoder's differ by design: the official
    D update runs the whole VAE, ours only the encoder, and scoring never reads the decoder's)."""
    modules = _vae_modules()
    buffers = dict(vae.named_buffers())
    encoder = {k: v for k, v in gold["vae_buffers"].items() if k.startswith("vae.encoder.")}
    assert len(encoder) == 8
    for full, expected in encoder.items():
        official = full.split(".", 1)[1]
        assert_summary(full, buffers[ours_name(official, modules)], expected, "statistic")


@torch.no_grad()
def _train_mode_logits(vae, disc, x, batch: int, r_dec=None, r_dis=None) -> torch.Tensor:
    vae.train()
    logits = []
    for start in range(0, len(x), batch):
        rows = slice(start, start + batch)
        mu, _ = vae.encode(x[rows])
        logits.append(disc(mu, None if r_dis is None else r_dis[rows]))
    return torch.cat(logits)


# ---------------------------------------------------------------------------------- TA-VAAL


def _task_models(gold: dict):
    model = build_task_model("resnet18", SHAPE, 10).double()
    ranker = build_ranker(model, SHAPE, hidden=128).double()
    shapes = gold["task"]["parameters"]
    load_official_weights(
        model,
        {k.split(".", 1)[1]: v for k, v in shapes.items() if k.startswith("backbone.")},
        _backbone_modules(),
    )
    load_official_weights(
        ranker,
        {k.split(".", 1)[1]: v for k, v in shapes.items() if k.startswith("module.")},
        LOSSNET_MODULES,
    )
    return model, ranker


def test_tavaal_task_learner_and_ranker_step_equals_the_official_code():
    """One step of TA-VAAL's train_epoch (ResNet18 + LossNet, SGD lr 0.1, momentum 0.9, weight
    decay 5e-4, loss = mean CE + LossPredLoss): our ranking_loss (TA-VAAL eq. 1) is the loss
    TA-VAAL's code trains its Ranker with, also for the method it calls 'lloss'."""
    gold = golden("tavaal")
    task_gold = gold["task"]
    model, ranker = _task_models(gold)
    batch = task_gold["batch"]
    x = uniform("tavaal/train", (batch, *SHAPE))
    y = torch.arange(batch) % 10
    params = list(model.parameters()) + list(ranker.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    ranker.train()
    loss, _ = train_step(
        model, ranker, optimizer, x, y, ClassificationTask(), RANKING_RANKER, RankerConfig(), False
    )
    assert_close(float(loss.detach()), task_gold["loss"][0], "task loss")
    models = {"backbone": model, "module": ranker}
    modules = {"backbone": _backbone_modules(), "module": LOSSNET_MODULES}
    for step, label in zip(task_gold["steps"], ("backbone", "module"), strict=True):
        assert_step(models, modules, step, label)
    buffers = dict(model.named_buffers())
    for full, expected in task_gold["buffers"].items():
        official = full.split(".", 1)[1]
        name = ours_name(official, _backbone_modules())
        assert_summary(full, buffers[name], expected, "statistic")


def test_tavaal_vae_and_discriminator_updates_and_sampler_equal_the_official_code():
    """train_vaal for two iterations, then query_samples' scoring, from TA-VAAL's code.

    Iteration 0: the official code conditions on uniform noise (ours: the Ranker's r from the
    first iteration, a deliberate difference); given that noise, the updates are equal.
    Iteration 1: r from the Ranker, sigmoid(r) into the decoder, raw r into D, which is our
    rank_normalization "official". L and U pass the VAE separately, as there. The sampler scores
    with the VAE in train mode (batches of 2), which ours reproduces in that mode."""
    gold = golden("tavaal")
    b = gold["batch"]
    vae, disc = adversary(gold, cond_dim=1)
    model, ranker = _task_models(gold)
    model.eval()
    ranker.eval()
    cfg = VAEConfig(latent_dim=gold["latent"], batch_size=b, kl_reduction="mean")
    data = uniform("tavaal/pool", (10, *SHAPE))
    labeled, subset = gold["labeled_set"], gold["subset"]
    opt_vae = torch.optim.Adam(vae.parameters(), lr=LR)
    opt_disc = torch.optim.Adam(disc.parameters(), lr=LR)
    models = {"vae": vae, "disc": disc}
    vae.train()
    disc.train()
    for iteration in range(2):
        rows = (
            labeled[iteration * b : (iteration + 1) * b]
            + subset[iteration * b : (iteration + 1) * b]
        )
        x = data[rows]
        if iteration == 0:
            raw = torch.tensor([v for draw in gold["noise_r"] for v in draw], dtype=torch.float64)
            r_dec = r_dis = raw
        else:
            with torch.no_grad():
                raw = ranker(model(x).features)
            decoder_input, disc_input = normalise_rank(raw.numpy(), "official")
            r_dec, r_dis = torch.from_numpy(decoder_input), torch.from_numpy(disc_input)
        loss = vae_update(
            vae, disc, opt_vae, x, r_dec, r_dis, noise(gold, iteration), b, cfg,
            separate_batch_norm=True,
        )  # fmt: skip
        assert_close(
            float(loss.total.detach()), gold["losses"][2 * iteration], f"VAE loss {iteration}"
        )
        assert_step(models, ADVERSARY_MODULES, gold["steps"][2 * iteration], "VAE update")
        disc_loss = disc_update(vae, disc, opt_disc, x, r_dis, b, separate_batch_norm=True)
        assert_close(
            float(disc_loss.detach()), gold["losses"][2 * iteration + 1], f"D loss {iteration}"
        )
        assert_step(models, ADVERSARY_MODULES, gold["steps"][2 * iteration + 1], "D update")

    candidates = data[subset]
    with torch.no_grad():
        raw = ranker(model(candidates).features)
    _, disc_input = normalise_rank(raw.numpy(), "official")
    logits = _train_mode_logits(vae, disc, candidates, b, r_dis=torch.from_numpy(disc_input))
    sampler = gold["sampler"]
    np.testing.assert_allclose(
        torch.sigmoid(logits).numpy(), sampler["probabilities"], rtol=RTOL, atol=0
    )
    # The official order runs from the most to the least "labeled"-looking; the query takes its
    # tail. Ours ranks lowest logit first.
    positions = np.arange(len(subset))
    ours = top_k(positions, -logits.numpy(), len(subset))
    assert ours[::-1].tolist() == sampler["order"]
    _assert_encoder_statistics(vae, gold)  # the train-mode scoring updated them too


# ---------------------------------------------------------------------------- initialisation

INIT_CASES = {
    "vaal_vae": (0, "vae"),
    "tavaal_vae": (1, "vae"),
    "vaal_disc": (0, "disc"),
    "tavaal_disc": (1, "disc"),
}


def _std_tolerance(count: int) -> float:
    # Five standard errors of a sample std (normal: 1/sqrt(2n); uniform: smaller).
    return 5.0 / math.sqrt(2 * count)


@pytest.mark.parametrize("case", sorted(INIT_CASES))
def test_initialisation_follows_the_official_code_layer_by_layer(case):
    """vae.init "official" (the default): the std of every parameter tensor as the official
    constructors leave it (golden: four seeds), and zero where theirs is zero. fc_mu, fc_logvar
    and the transposed convolutions keep PyTorch's defaults there, a Kaiming-normal init here
    would not: fc_mu's weight std is 0.022 with "kaiming" and 0.009 in the official code."""
    cond_dim, kind = INIT_CASES[case]
    layers = golden("init")["layers"][case]
    torch.manual_seed(0)
    if kind == "vae":
        module = build_vae(SHAPE, 32, cond_dim, base_channels=128, init="official")
        modules = _vae_modules()
    else:
        module = build_discriminator(32, cond_dim, hidden=512, depth=3)
        modules = {}
    params = dict(module.named_parameters())
    assert len(params) == len(layers)
    for official, expected in layers.items():
        value = params[ours_name(official, modules)].detach().double()
        assert (expected["max_abs"] == 0) == bool((value == 0).all()), official
        if expected["std"] > 0:
            ratio = float(value.std()) / expected["std"]
            assert abs(ratio - 1) <= _std_tolerance(value.numel()), (official, ratio)
    if kind == "vae":
        kaiming = build_vae(SHAPE, 32, cond_dim, base_channels=128, init="kaiming")
        assert float(kaiming.fc_mu.weight.detach().std()) > 2 * layers["fc_mu.weight"]["std"]
        assert bool((kaiming.fc_mu.bias == 0).all())


def test_vae_init_is_hashed_only_when_it_is_not_the_former_kaiming():
    """Results made before `vae.init` existed used Kaiming-normal: with `init: kaiming` a query's
    settings hash is what it was; the new default (official) changes it."""
    from tavaal.config import ExperimentConfig
    from tavaal.strategies import method_hash

    base = {"dataset": "digits", "model": "digits_cnn", "methods": ["vaal", "tavaal"]}
    former = ExperimentConfig.from_dict("x", {**base, "vae": {"init": "kaiming"}})
    official = ExperimentConfig.from_dict("x", base)
    assert official.vae.init == "official"
    assert "init" not in former.select("vae")["vae"]
    assert official.select("vae")["vae"]["init"] == "official"
    for method in ("vaal", "tavaal"):
        assert method_hash(former, method) != method_hash(official, method)


VAE_METHODS = {"vaal", "tavaal", "vaal_lloss", "vaal_frozen_vae", "vae_wasserstein"}
CPU_CONFIGS = ["config.yaml", "presets/fashion_mnist_cpu.yaml", "presets/practitioner_shapes.yaml"]


# Study presets whose results were made before `vae.init: official` became the default; the
# later ones (the training-recipe studies) run the papers' defaults.
EARLIER_STUDIES = [
    f"presets/study_{name}.yaml"
    for name in ("digits", "digits_ablation", "digits_robustness", "fmnist", "fmnist_noisy")
]
LATER_STUDIES = ["presets/study_fmnist_recipes.yaml", "presets/study_cifar10_recipes.yaml"]


def test_every_study_preset_is_an_earlier_or_a_later_one():
    studies = {str(p.relative_to(REPO)) for p in REPO.glob("presets/study_*.yaml")}
    assert studies == set(EARLIER_STUDIES) | set(LATER_STUDIES)


@pytest.mark.parametrize("path", LATER_STUDIES)
def test_the_recipe_studies_run_the_papers_vae_init_and_rank_conditioning(path):
    from tavaal.config import experiment_from_config, load_config

    config = load_config(REPO / path)
    for name in config["experiments"]:
        exp = experiment_from_config(config, name)
        assert (exp.vae.init, exp.vae.rank_normalization) == ("official", "sigmoid"), name


@pytest.mark.parametrize("path", CPU_CONFIGS + EARLIER_STUDIES)
def test_the_cpu_configs_keep_the_kaiming_init_their_results_were_made_with(path):
    from tavaal.config import experiment_from_config, load_config

    config = load_config(REPO / path)
    for name in config["experiments"]:
        exp = experiment_from_config(config, name)
        if VAE_METHODS & set(exp.methods):
            assert exp.vae.init == "kaiming", (path, name)


def test_the_goldens_are_of_the_pinned_official_commits():
    pinned = {"sinhasam/vaal": "67263f3", "cubeyoung/TA-VAAL": "1161071"}
    for name in ("vaal", "tavaal"):
        official = golden(name)["official"]
        assert official["commit"].startswith(pinned[official["repository"]])
    for repository, commit in golden("init")["official"].items():
        assert commit.startswith(pinned[repository])
