import dataclasses

import pytest

from tavaal.config import ExperimentConfig, experiment_from_config, load_config
from tavaal.errors import ConfigError
from tavaal.validation import check_experiment


def minimal(**overrides):
    # A protocol the 1,258 digits can give (the defaults are CIFAR-sized).
    data = {
        "dataset": "digits",
        "model": "digits_cnn",
        "methods": ["random"],
        "initial_size": 100,
        "budget": 100,
        "stages": 3,
    }
    data.update(overrides)
    return data


def test_defaults_follow_the_papers():
    exp = ExperimentConfig.from_dict("x", minimal())
    # TA-VAAL supplement Table 1 (CIFAR-10): SGD lr 0.1, decay at 160 of 200, batch 128.
    assert exp.train.epochs == 200 and exp.train.lr == 0.1 and exp.train.milestones == (160,)
    assert exp.train.batch_size == 128 and exp.vae.latent_dim == 64
    assert exp.ranker.detach_epoch == 120


def test_nested_values_are_coerced_and_frozen():
    exp = ExperimentConfig.from_dict("x", minimal(train={"lr": 1, "milestones": [3, 5]}))
    assert exp.train.lr == 1.0 and isinstance(exp.train.lr, float)
    assert exp.train.milestones == (3, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.train.lr = 2.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(vae={"latent": 3}), "experiments.x.vae.latent: unknown key"),
        (minimal(train={"epochs": "ten"}), "experiments.x.train.epochs: expected an integer"),
        (minimal(train={"augment": 1}), "experiments.x.train.augment: expected true/false"),
        (minimal(methods=["random", "oracle"]), "unknown method 'oracle'"),
        (minimal(dataset="places365"), "experiments.x.dataset: unknown dataset 'places365'"),
        (minimal(model="resnet50"), "experiments.x.model: unknown task model"),
        (minimal(vae={"kl_reduction": "max"}), "experiments.x.vae.kl_reduction: 'max' is not"),
        (minimal(budget=0), "experiments.x.budget: must be >= 1"),
        (minimal(subset_size=5, budget=10), "experiments.x.subset_size"),
        (minimal(seeds=[1, 1]), "experiments.x.seeds"),
        ({"model": "mlp"}, "experiments.x.dataset: required key is missing"),
    ],
)
def test_bad_values_name_the_key(data, message):
    # Values are checked when the config is read, names against the registries by
    # check_experiment (the workflow and the CLI call both before any job).
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_experiment(ExperimentConfig.from_dict("x", data))


def test_mc_dropout_methods_need_the_experiments_dropout():
    exp = ExperimentConfig.from_dict("x", minimal(methods=["random", "bald", "dbal"]))
    with pytest.raises(ConfigError, match=r"experiments\.x\.train\.dropout: bald, dbal"):
        check_experiment(exp)
    check_experiment(
        ExperimentConfig.from_dict("x", minimal(methods=["bald"], train={"dropout": 0.3}))
    )


def test_a_pool_too_small_for_the_budget_is_named_before_any_job(tmp_path):
    # moons: 550 train points. 20 + (50 - 1) x 10 = 510 fits; 20 + (60 - 1) x 10 = 610 does not.
    moons = {"dataset": "moons", "model": "mlp", "initial_size": 20, "budget": 10}
    fits = ExperimentConfig.from_dict("x", minimal(**moons, stages=50))
    check_experiment(fits)
    big = ExperimentConfig.from_dict("x", minimal(**moons, stages=60))
    message = (
        r"experiments\.x: initial_size 20 \+ \(stages 60 - 1\) x budget 10 = 610 samples, "
        r"but moons's train split has 550"
    )
    with pytest.raises(ConfigError, match=message):
        check_experiment(big)
    held = ExperimentConfig.from_dict(
        "x", minimal(**moons, stages=50, train={"validation_size": 50})
    )
    with pytest.raises(ConfigError, match=r"train\.validation_size 50 \+ initial_size 20"):
        check_experiment(held)


def test_half_normalisation_is_for_images():
    check_experiment(ExperimentConfig.from_dict("x", minimal(normalization="half")))
    moons = minimal(dataset="moons", model="mlp", normalization="half", initial_size=20)
    with pytest.raises(ConfigError, match=r"experiments\.x\.normalization: 'half' .* moons"):
        check_experiment(ExperimentConfig.from_dict("x", moons))


def test_method_settings_hold_what_the_query_reads_and_not_the_lists():
    from tavaal.strategies import method_hash

    a = ExperimentConfig.from_dict("x", minimal(seeds=[0], methods=["random"]))
    b = ExperimentConfig.from_dict("x", minimal(seeds=[0, 1, 2], methods=["random", "entropy"]))
    vae = ExperimentConfig.from_dict("x", minimal(vae={"lr": 0.1}))
    budget = ExperimentConfig.from_dict("x", minimal(budget=7))
    assert method_hash(a, "random") == method_hash(b, "random")
    assert method_hash(a, "random") != method_hash(a, "entropy")
    # A VAE setting concerns VAAL's and TA-VAAL's queries only; the budget every query.
    assert method_hash(vae, "random") == method_hash(a, "random")
    assert method_hash(vae, "vaal") != method_hash(a, "vaal")
    assert method_hash(vae, "tavaal") != method_hash(a, "tavaal")
    assert all(method_hash(budget, m) != method_hash(a, m) for m in ("random", "vaal"))


def test_to_dict_round_trip():
    exp = ExperimentConfig.from_dict("x", minimal(methods=["random", "entropy"], seeds=[3]))
    settings = exp.to_dict()
    assert settings.pop("name") == "x"
    assert ExperimentConfig.from_dict("x", settings) == exp
    assert exp.select("budget", "train.lr") == {"budget": exp.budget, "train.lr": exp.train.lr}


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    # yaml.safe_load refuses Python object tags instead of running them.
    evil = tmp_path / "evil.yaml"
    evil.write_text("experiments: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError):
        load_config(evil)
    good = tmp_path / "good.yaml"
    good.write_text("experiments:\n  d:\n    dataset: digits\n    model: digits_cnn\n")
    with pytest.raises(ConfigError, match="experiments.nope: no such experiment; defined: d"):
        experiment_from_config(load_config(good), "nope")
    assert experiment_from_config(load_config(good), "d").dataset == "digits"
