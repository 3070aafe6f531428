import numpy as np
import pytest
import torch

from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset, to_tensor_batch
from tavaal.errors import CheckpointError
from tavaal.pool import initial_indices, validation_indices
from tavaal.strategies import strategy_class
from tavaal.training import (
    ENSEMBLE,
    PLAIN,
    RANKING_RANKER,
    augment_images,
    load_task_models,
    train_task_learner,
    training_hash,
)


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    return load_dataset("moons", tmp_path_factory.mktemp("data"))


def moons_exp(**train):
    settings = {"epochs": 30, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "milestones": []}
    settings.update(train)
    return ExperimentConfig.from_dict(
        "m",
        {
            "dataset": "moons",
            "model": "mlp",
            "methods": ["random", "lloss", "lloss_v2", "ensemble_varr", "bald"],
            "initial_size": 100,
            "train": {"dropout": 0.3, **settings},
            "ranker": {"detach_epoch": 20},
            "query": {"ensemble_size": 3},
        },
    )


def train(exp, method, dataset, **kwargs):
    """Train `method`'s model the way the workflow does: by its recipe."""
    idx = initial_indices(dataset.info.n_train, exp.initial_size, 0)
    recipe = strategy_class(method).recipe
    return train_task_learner(
        exp, recipe, dataset, idx, dataset.y_train[idx], 0, 0, "cpu", lambda line: None, **kwargs
    )


def test_augment_is_a_padded_crop_with_optional_flip():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(1, 255, (16, 8, 8, 3), dtype=torch.uint8)
    out = augment_images(images, gen)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))
    flipped_any = False
    for i in range(len(images)):
        options = [
            (padded[i, y : y + 8, x : x + 8], flip)
            for y in range(9)
            for x in range(9)
            for flip in (False, True)
        ]
        matches = [
            flip for crop, flip in options if torch.equal(out[i], crop.flip(1) if flip else crop)
        ]
        assert matches, f"sample {i} is not a crop of the zero-padded image"
        flipped_any |= all(matches)
    assert flipped_any  # with 16 samples some flips happen
    unflipped = augment_images(images, torch.Generator().manual_seed(0), padding=1, hflip=False)
    padded = torch.nn.functional.pad(images, (0, 0, 1, 1, 1, 1))
    for i in range(len(images)):
        assert any(
            torch.equal(unflipped[i], padded[i, y : y + 8, x : x + 8])
            for y in range(3)
            for x in range(3)
        )


def test_training_learns_and_is_deterministic(moons):
    exp = moons_exp()
    checkpoint, metrics = train(exp, "random", moons)
    assert metrics["accuracy"] > 0.85  # two moons with 100 labels is easy
    assert metrics["labels"] == 100 and metrics["epochs"] == 30
    assert len(metrics["per_class_accuracy"]) == 2
    again, metrics_again = train(exp, "random", moons)
    for key, value in checkpoint["model"].items():
        assert torch.equal(value, again["model"][key]), key
    assert metrics_again["accuracy"] == metrics["accuracy"]


def test_only_ranker_methods_train_a_ranker(moons):
    exp = moons_exp(epochs=2)
    plain, _ = train(exp, "random", moons)
    assert plain["ranker"] is None
    for method in ("lloss", "lloss_v2"):
        checkpoint, _ = train(exp, method, moons)
        assert checkpoint["ranker"] is not None


def test_ranker_gradient_stops_at_detach_epoch(moons):
    # After detach_epoch the ranker loss must not move the backbone: with detach_epoch=0 the
    # backbone ends identical whatever the ranker-loss weight; without detaching it differs.
    def backbone(weight, detach_epoch):
        exp = ExperimentConfig.from_dict(
            "m",
            {
                **{k: v for k, v in moons_exp(epochs=3).to_dict().items() if k != "name"},
                "ranker": {"weight": weight, "detach_epoch": detach_epoch},
            },
        )
        return train(exp, "lloss_v2", moons)[0]["model"]

    detached_a, detached_b = backbone(1.0, 0), backbone(5.0, 0)
    assert all(torch.equal(detached_a[k], detached_b[k]) for k in detached_a)
    attached_a, attached_b = backbone(1.0, 3), backbone(5.0, 3)
    assert not all(torch.equal(attached_a[k], attached_b[k]) for k in attached_a)


def test_ensemble_reports_the_ensembles_accuracy(moons, tmp_path):
    exp = moons_exp(epochs=3)
    checkpoint, metrics = train(exp, "ensemble_varr", moons)
    assert len(checkpoint["ensemble_members"]) == 2
    key = next(iter(checkpoint["model"]))  # the first layer's weight
    assert not torch.equal(checkpoint["model"][key], checkpoint["ensemble_members"][0][key])
    path = tmp_path / "model.pt"
    torch.save(checkpoint, path)
    loaded = load_task_models(path, exp, ENSEMBLE, moons.info)
    assert len(loaded.models) == 3 and loaded.ranker is None
    # The learning curve shows the ensemble (mean of softmax), the members are kept aside.
    x = to_tensor_batch(moons.x_test, moons.info)
    labels = torch.from_numpy(np.array(moons.y_test))
    with torch.no_grad():
        probs = [torch.softmax(model(x).logits, 1) for model in loaded.models]
    expected = float((torch.stack(probs).mean(0).argmax(1) == labels).float().mean())
    members = [float((p.argmax(1) == labels).float().mean()) for p in probs]
    assert metrics["accuracy"] == pytest.approx(expected)
    assert metrics["member_accuracies"] == pytest.approx(members)
    assert "ensemble_accuracy" not in metrics


def test_dropout_is_the_experiments_so_baselines_train_identical_models(moons):
    """Every method without a ranker trains the plain recipe: with the experiment's dropout,
    bald's model is random's, entropy's, coreset's, ... on the same labeled set."""
    exp = moons_exp(epochs=2)
    plain = ("random", "entropy", "coreset", "bald", "var_ratio", "dbal", "vaal")
    assert {strategy_class(m).recipe for m in plain} == {PLAIN}
    assert len({training_hash(exp, strategy_class(m).recipe) for m in plain}) == 1
    reference, reference_metrics = train(exp, "random", moons)
    assert reference["dropout"] == 0.3
    for method in ("bald", "entropy"):
        checkpoint, metrics = train(exp, method, moons)
        assert all(torch.equal(v, checkpoint["model"][k]) for k, v in reference["model"].items())
        assert metrics["accuracy"] == reference_metrics["accuracy"]
    assert strategy_class("tavaal").recipe == strategy_class("lloss_v2").recipe == RANKING_RANKER
    assert training_hash(exp, PLAIN) != training_hash(exp, RANKING_RANKER)


def test_iterations_mode_counts_optimizer_steps_and_milestones(moons):
    # 100 labels in batches of 32: 4 steps a pass (the last batch holds 4). 10 steps end inside
    # the third pass; the learning rate drops after steps 4 and 8 (VAAL's code: every quarter).
    exp = moons_exp(iterations=10, milestones=[4, 8], gamma=0.1, lr=0.01)
    checkpoint, metrics = train(exp, "random", moons)
    assert checkpoint["iteration"] == 10 and checkpoint["epoch"] == 3
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.1**2)
    assert metrics["iterations"] == 10
    state = checkpoint["optimizer"]["state"]
    assert int(state[0]["step"]) == 10  # Adam's own step count


def test_validation_keeps_the_best_weights(moons, tmp_path):
    exp = moons_exp(epochs=12, validation_size=100, validate_every=1, lr=0.05)
    held = validation_indices(moons.info.n_train, 100, 0)
    idx = initial_indices(moons.info.n_train, 60, 0, held)
    assert not set(idx.tolist()) & set(held.tolist())
    lines = []
    checkpoint, metrics = train_task_learner(
        exp,
        PLAIN,
        moons,
        idx,
        moons.y_train[idx],
        0,
        0,
        "cpu",
        lines.append,
        validation=(held, moons.y_train[held]),
    )
    path = tmp_path / "model.pt"
    torch.save(checkpoint, path)
    model = load_task_models(path, exp, PLAIN, moons.info).models[0]
    with torch.no_grad():
        logits = model(to_tensor_batch(moons.x_train[held], moons.info)).logits
    accuracy = float((logits.argmax(1).numpy() == moons.y_train[held]).mean())
    # The kept weights are the reported best, not necessarily the last ones.
    assert metrics["validation_accuracy"] == [pytest.approx(accuracy)]
    assert 1 <= metrics["selected_step"][0] <= checkpoint["iteration"]
    assert any("keeping the weights of step" in line for line in lines)


class Interrupted(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(moons, tmp_path, monkeypatch):
    import tavaal.training as training

    exp = moons_exp(epochs=8, checkpoint_every=2, milestones=[5])
    resume = tmp_path / "model.pt.resume"
    uninterrupted, metrics = train(exp, "lloss", moons)

    real_save = training._save_resume

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 4:
            raise Interrupted

    monkeypatch.setattr(training, "_save_resume", save_then_die)
    with pytest.raises(Interrupted):
        train(exp, "lloss", moons, resume_path=resume)
    assert resume.exists()
    monkeypatch.setattr(training, "_save_resume", real_save)
    resumed, resumed_metrics = train(exp, "lloss", moons, resume_path=resume)
    for part in ("model", "ranker"):
        for key, value in uninterrupted[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)
    assert resumed_metrics["accuracy"] == metrics["accuracy"]
    assert resumed_metrics["test_loss"] == metrics["test_loss"]


def test_resume_file_from_other_settings_is_ignored(moons, tmp_path):
    exp = moons_exp(epochs=4, checkpoint_every=1)
    resume = tmp_path / "r.resume"
    torch.save({"settings_hash": "other", "epoch": 3}, resume)
    lines = []
    idx = initial_indices(moons.info.n_train, exp.initial_size, 0)
    checkpoint, _ = train_task_learner(
        exp,
        PLAIN,
        moons,
        idx,
        moons.y_train[idx],
        0,
        0,
        "cpu",
        lines.append,
        resume_path=resume,
    )
    fresh, _ = train(exp, "random", moons)
    assert any("other settings; ignoring it" in line for line in lines)
    assert not any("resumed" in line for line in lines)
    for key, value in fresh["model"].items():
        assert torch.equal(value, checkpoint["model"][key]), key


def test_checkpoint_is_checked_on_load(moons, tmp_path):
    exp = moons_exp(epochs=1)
    checkpoint, _ = train(exp, "lloss", moons)
    path = tmp_path / "model.pt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="written for recipe 'margin_ranker'"):
        load_task_models(path, exp, RANKING_RANKER, moons.info)
    margin = strategy_class("lloss").recipe
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_task_models(path, exp, margin, moons.info)
    with pytest.raises(CheckpointError, match="not found"):
        load_task_models(tmp_path / "none.pt", exp, margin, moons.info)


def test_images_train_on_digits(tmp_path):
    digits = load_dataset("digits", tmp_path)
    exp = ExperimentConfig.from_dict(
        "d",
        {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": ["tavaal"],
            "initial_size": 300,
            "train": {
                "epochs": 6,
                "batch_size": 64,
                "milestones": [5],
                "lr": 0.05,
                "augment": False,
            },
            "ranker": {"detach_epoch": 3},
        },
    )
    idx = initial_indices(digits.info.n_train, 300, 1)
    checkpoint, metrics = train_task_learner(
        exp, RANKING_RANKER, digits, idx, digits.y_train[idx], 1, 0, "cpu", lambda line: None
    )
    assert metrics["accuracy"] > 0.5  # ten classes: chance is 0.1
    assert checkpoint["ranker"] is not None
    assert np.isclose(sum(1 for v in metrics["per_class_accuracy"] if v is not None), 10)
