"""The strong training recipe (Munjal et al., CVPR 2022): RandAugment and SWA."""

import numpy as np
import pytest
import torch
from torch import nn

import tavaal.swa as swa_module
from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset, to_tensor_batch
from tavaal.errors import ConfigError
from tavaal.pool import initial_indices
from tavaal.randaugment import OPS, _apply, randaugment_images
from tavaal.swa import WeightAverage, recompute_batch_norm
from tavaal.tasks.classification import augment_raw
from tavaal.training import PLAIN, RANKING_RANKER, train_task_learner


def images(n=6, h=8, w=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, c), generator=g, dtype=torch.uint8)


# --- RandAugment ------------------------------------------------------------------------------


def test_operations_at_hand_computed_values():
    x = torch.tensor([[[[0, 100, 200, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 4): NCHW
    assert torch.equal(_apply("identity", x, 1.0), x)
    # Solarize at full magnitude: threshold 0, every pixel inverted; at 0.5: >= 127.5 inverted.
    assert _apply("solarize", x, 1.0).tolist() == [[[[255, 155, 55, 0]]]]
    assert _apply("solarize", x, 0.5).tolist() == [[[[0, 100, 55, 0]]]]
    # Posterize at full magnitude keeps 4 bits.
    assert _apply("posterize", x, 1.0).tolist() == [[[[0, 96, 192, 240]]]]
    # Brightness 1 + 0.9 * 0.5 = 1.45, clamped to 255; and 1 - 0.45 = 0.55.
    assert _apply("brightness", x, 0.5).tolist() == [[[[0, 145, 255, 255]]]]
    assert _apply("brightness", x, -0.5).tolist() == [[[[0, 55, 110, 140]]]]
    # One channel: colour (saturation) leaves it as it is.
    assert torch.equal(_apply("color", x, 1.0), x)


def test_translation_moves_by_the_fraction_of_the_side_and_fills_with_zero():
    x = torch.arange(1, 1 + 10 * 10, dtype=torch.uint8).reshape(1, 1, 10, 10)
    # 150/331 of 10 px at magnitude 0.5: round(2.27) = 2 px to the right.
    out = _apply("translate_x", x, 0.5)
    assert torch.equal(out[..., 2:], x[..., :-2])
    assert not out[..., :2].any()
    out = _apply("translate_y", x, -0.5)
    assert torch.equal(out[..., :-2, :], x[..., 2:, :])
    assert not out[..., -2:, :].any()


def test_each_row_gets_the_operation_the_generator_drew():
    batch = images(n=64)
    out = randaugment_images(batch, torch.Generator().manual_seed(3), ops=1, magnitude=30)
    g = torch.Generator().manual_seed(3)
    choice = torch.randint(0, len(OPS), (1, 64), generator=g)[0]
    negative = (torch.rand((1, 64), generator=g) < 0.5)[0]
    nchw = batch.permute(0, 3, 1, 2)
    for row in range(64):
        op = OPS[int(choice[row])]
        strength = -1.0 if negative[row] else 1.0
        expected = _apply(op, nchw[row : row + 1], strength)
        assert torch.equal(out[row], expected[0].permute(1, 2, 0)), (row, op)
    assert len(set(choice.tolist())) > 8  # the draws cover the operations


def test_randaugment_is_seeded_and_shares_equal_the_global_batch():
    batch = images(n=10)
    a = randaugment_images(batch, torch.Generator().manual_seed(1), ops=2, magnitude=9)
    b = randaugment_images(batch, torch.Generator().manual_seed(1), ops=2, magnitude=9)
    c = randaugment_images(batch, torch.Generator().manual_seed(2), ops=2, magnitude=9)
    assert a.dtype == torch.uint8 and a.shape == batch.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Data-parallel: each rank augments its rows with the global batch's draws.
    first = randaugment_images(batch[:4], torch.Generator().manual_seed(1), 2, 9, share=(0, 10))
    second = randaugment_images(batch[4:], torch.Generator().manual_seed(1), 2, 9, share=(4, 10))
    assert torch.equal(torch.cat([first, second]), a)
    with pytest.raises(ValueError, match="magnitude 31"):
        randaugment_images(batch, torch.Generator(), 1, 31)


def test_augment_raw_crops_then_randaugments_and_advances_one_stream():
    exp = ExperimentConfig.from_dict(
        "d",
        {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": ["random"],
            "train": {"randaugment_ops": 2, "randaugment_magnitude": 12},
        },
    )
    batch = images(n=5)
    out = augment_raw(batch, torch.Generator().manual_seed(4), exp.train)
    from tavaal.augmentation import augment_images

    g = torch.Generator().manual_seed(4)
    cropped = augment_images(batch, g, 4, True)
    assert torch.equal(out, randaugment_images(cropped, g, 2, 12))


# --- SWA --------------------------------------------------------------------------------------


def test_weight_average_is_the_mean_of_the_snapshots_and_survives_a_resume():
    module = nn.Linear(3, 2)
    snapshots = []
    average = WeightAverage()
    for k in range(3):
        with torch.no_grad():
            module.weight.add_(float(k + 1))
            module.bias.mul_(-2.0)
        snapshots.append({n: p.detach().clone() for n, p in module.named_parameters()})
        average.update(module)
        if k == 1:
            average = WeightAverage.from_state(average.state())
    average.copy_to(module)
    for name, param in module.named_parameters():
        expected = torch.stack([s[name] for s in snapshots]).mean(0)
        assert torch.allclose(param, expected, atol=1e-6), name
    assert average.count == 3


def test_batch_norm_statistics_are_the_plain_mean_over_the_batches_and_draw_no_random_number():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    model[1].running_mean.fill_(7.0)
    batches = [torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.tensor([[4.0, 5.0], [6.0, 9.0]])]
    state = torch.get_rng_state()
    recompute_batch_norm(model, iter(batches), model)
    assert torch.equal(torch.get_rng_state(), state)
    # Per batch: means (1, 2), (5, 7); unbiased variances (2, 2), (2, 8).
    assert model[1].running_mean.tolist() == [3.0, 4.5]
    assert model[1].running_var.tolist() == [2.0, 5.0]
    assert model[1].momentum == 0.1 and model.training
    # Without batch norm nothing is run.
    calls = []
    recompute_batch_norm(nn.Linear(2, 2), iter(batches), calls.append)
    assert calls == []


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", tmp_path_factory.mktemp("data"))


def digits_exp(**train):
    settings = {
        "epochs": 4,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 0.003,
        "milestones": [],
        "augment": False,
    }
    settings.update(train)
    return ExperimentConfig.from_dict(
        "d",
        {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": ["random", "tavaal"],
            "initial_size": 200,
            "train": settings,
            "ranker": {"detach_epoch": 3},
        },
    )


def test_swa_keeps_the_average_of_the_last_epochs_with_recomputed_batch_norm(digits, monkeypatch):
    exp = digits_exp(swa_start=2, swa_lr=0.001, randaugment_ops=1)
    idx = initial_indices(digits.info.n_train, 200, 0)
    snapshots, rates = [], []
    real_update = WeightAverage.update

    def record(self, module):
        snapshots.append({n: p.detach().clone() for n, p in module.named_parameters()})
        real_update(self, module)

    monkeypatch.setattr(WeightAverage, "update", record)
    lines = []
    real_recompute = swa_module.recompute_batch_norm

    def spy(module, batches, forward):
        rates.extend(g["lr"] for g in optimizer_groups)
        real_recompute(module, batches, forward)

    optimizer_groups = []
    import tavaal.training as training

    real_optimizer = training._optimizer

    def keep_optimizer(exp, params):
        optimizer = real_optimizer(exp, params)
        optimizer_groups.extend(optimizer.param_groups)
        return optimizer

    monkeypatch.setattr(training, "_optimizer", keep_optimizer)
    monkeypatch.setattr(training, "recompute_batch_norm", spy)
    checkpoint, metrics = train_task_learner(
        exp, RANKING_RANKER, digits, idx, digits.y_train[idx], 0, 0, "cpu", lines.append
    )
    model = checkpoint["model"]
    # The model's and the ranker's averages each take epochs 3 and 4 of 4.
    snapshots = [s for s in snapshots if set(s) <= set(model)]
    assert len(snapshots) == 2
    assert rates == [0.001]
    for name, first in snapshots[0].items():
        expected = (first + snapshots[1][name]) / 2
        assert torch.allclose(model[name], expected, atol=1e-6), name
    assert checkpoint["ranker"] is not None
    assert any("SWA, 2 epochs" in line and "200 labeled samples" in line for line in lines)
    assert metrics["accuracy"] > 0.3
    # The running statistics are the labeled set's, batch by batch in index order.
    from tavaal.models import build_task_model

    net = build_task_model(exp.model, digits.info.input_shape, digits.info.num_classes)
    net.load_state_dict(model)
    x = to_tensor_batch(digits.x_train[idx], digits.info)
    expected_net = build_task_model(exp.model, digits.info.input_shape, digits.info.num_classes)
    expected_net.load_state_dict(model)
    recompute_batch_norm(expected_net, iter(x.split(64)), expected_net)
    for key, value in expected_net.state_dict().items():
        if "running" in key:
            assert torch.allclose(value, model[key], atol=1e-5), key


def test_swa_resume_equals_uninterrupted(digits, tmp_path, monkeypatch):
    import tavaal.training as training

    exp = digits_exp(swa_start=1, checkpoint_every=1)
    idx = initial_indices(digits.info.n_train, 200, 0)
    labels = digits.y_train[idx]
    uninterrupted, _ = train_task_learner(exp, PLAIN, digits, idx, labels, 0, 0, "cpu", print)
    real_save = training._save_resume

    class Interrupted(Exception):
        pass

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 3:
            raise Interrupted

    resume = tmp_path / "model.pt.resume"
    monkeypatch.setattr(training, "_save_resume", save_then_die)
    with pytest.raises(Interrupted):
        train_task_learner(exp, PLAIN, digits, idx, labels, 0, 0, "cpu", print, resume_path=resume)
    monkeypatch.setattr(training, "_save_resume", real_save)
    resumed, _ = train_task_learner(
        exp, PLAIN, digits, idx, labels, 0, 0, "cpu", print, resume_path=resume
    )
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_the_recipe_enters_the_settings_hash_only_when_on():
    from tavaal.training import training_hash

    off = training_hash(digits_exp(), PLAIN)
    assert training_hash(digits_exp(randaugment_magnitude=3, swa_lr=0.1), PLAIN) == off
    assert training_hash(digits_exp(randaugment_ops=1), PLAIN) != off
    assert training_hash(digits_exp(swa_start=2), PLAIN) != off


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"randaugment_ops": -1}, r"train\.randaugment_ops: must be >= 0"),
        ({"randaugment_magnitude": 31}, r"train\.randaugment_magnitude: must be in 0\.\.30"),
        ({"swa_start": 4}, r"train\.swa_start: 4 leaves no epoch to average"),
        ({"swa_start": 2, "iterations": 100}, r"train\.swa_start: counts epochs"),
        ({"swa_start": 2, "validation_size": 50}, r"set one of them"),
        ({"swa_start": 2, "swa_lr": 0.0}, r"train\.swa_lr: must be > 0"),
    ],
)
def test_bad_recipe_settings_name_the_key(train, message):
    with pytest.raises(ConfigError, match=message):
        digits_exp(**train)


def test_segmentation_refuses_randaugment():
    from tavaal.validation import check_experiment

    exp = ExperimentConfig.from_dict(
        "s",
        {
            "dataset": "seg_shapes",
            "model": "drn_d_22_slim",
            "methods": ["random"],
            "train": {"randaugment_ops": 1},
        },
    )
    message = r"experiments\.s\.train\.randaugment_ops: RandAugment's geometry"
    with pytest.raises(ConfigError, match=message):
        check_experiment(exp, "experiments.s")


def test_vector_datasets_refuse_randaugment():
    from tavaal.validation import check_experiment

    exp = ExperimentConfig.from_dict(
        "m", {"dataset": "moons", "model": "mlp", "train": {"randaugment_ops": 1}}
    )
    with pytest.raises(ConfigError, match=r"m\.train\.randaugment_ops: RandAugment transforms"):
        check_experiment(exp)


def test_randaugment_changes_the_images_the_model_trains_on(digits):
    """With the recipe on, training sees other images (and so ends elsewhere) than without."""
    idx = initial_indices(digits.info.n_train, 200, 0)
    labels = digits.y_train[idx]
    plain, _ = train_task_learner(
        digits_exp(epochs=1), PLAIN, digits, idx, labels, 0, 0, "cpu", lambda _: None
    )
    strong, _ = train_task_learner(
        digits_exp(epochs=1, randaugment_ops=2), PLAIN, digits, idx, labels, 0, 0, "cpu", print
    )
    differs = [not torch.equal(plain["model"][k], strong["model"][k]) for k in plain["model"]]
    assert np.mean(differs) > 0.5
