"""`train.init_weights`: a task learner starts from a user-supplied state dict (ours, or
torchvision's / the released DRN-D's layout), checked against the model before any job and in
the training job, and hashed by content (`tavaal.models.weights`, `tavaal.config`)."""

import re
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch import nn

from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset
from tavaal.errors import ConfigError
from tavaal.models import build_task_model
from tavaal.models.drn import build_segmentation_model
from tavaal.models.weights import (
    check_initial_weights,
    load_initial_weights,
    match_state_dict,
)
from tavaal.pool import initial_indices
from tavaal.training import PLAIN, train_task_learner, training_hash
from tavaal.validation import check_experiment

NUM_CLASSES = 19


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` moved away from any initialisation, batch-norm statistics included."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.1 * torch.randn(value.shape, generator=generator).abs())
    return model


def slim_drn(num_classes: int = NUM_CLASSES, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_segmentation_model("drn_d_22_slim", (3, 32, 32), num_classes).eval()


def error_of(model: nn.Module, name: str, state: dict, path) -> str:
    torch.save(state, path)
    with pytest.raises(ConfigError) as info:
        load_initial_weights(model, name, path)
    message = str(info.value)
    assert message.startswith(f"train.init_weights: {path}")
    return message


def test_our_layout_round_trips(tmp_path):
    trained = perturbed(slim_drn(seed=0))
    path = tmp_path / "drn.pt"
    torch.save(trained.state_dict(), path)
    model = slim_drn(seed=1)
    loaded = load_initial_weights(model, "drn_d_22_slim", path)
    assert loaded.layout == "tavaal" and loaded.kept_initialisation == ()
    expected = trained.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(trained(x).logits, model.eval()(x).logits)


def test_a_body_without_classifier_keeps_the_classifiers_initialisation(tmp_path):
    source = perturbed(slim_drn(num_classes=5))
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    # Older checkpoints (torch < 0.4.1, the released DRN's) have no num_batches_tracked.
    body = {k: v for k, v in body.items() if not k.endswith("num_batches_tracked")}
    torch.save(body, tmp_path / "body.pt")
    target = slim_drn(seed=2)
    classifier = target.classifier.weight.clone()
    loaded = load_initial_weights(target, "drn_d_22_slim", tmp_path / "body.pt")
    assert loaded.kept_initialisation == ("classifier.weight", "classifier.bias")
    assert torch.equal(target.groups[3][1][0].weight, source.groups[3][1][0].weight)
    assert torch.equal(target.classifier.weight, classifier)


def test_mismatches_name_the_file_and_the_keys(tmp_path):
    model = slim_drn()
    state = model.state_dict()
    path = tmp_path / "other.pt"

    missing = {k: v for k, v in state.items() if k != "groups.1.0.conv2.weight"}
    assert "missing 'groups.1.0.conv2.weight'" in error_of(model, "drn_d_22_slim", missing, path)
    # A wider stem: every mismatching key named (three) and the rest counted.
    wide = build_segmentation_model("drn_d_22", (3, 32, 32), NUM_CLASSES).state_dict()
    message = error_of(model, "drn_d_22_slim", wide, path)
    assert re.search(
        r"'groups\.0\.0\.0\.0\.weight' has shape \(16, 3, 7, 7\), the model expects "
        r"\(4, 3, 7, 7\), .* and \d+ more",
        message,
    )
    # A classifier for other classes is a mismatch, not silently dropped.
    other_classes = slim_drn(num_classes=5).state_dict()
    assert "'classifier.weight' has shape (5, 128, 1, 1)" in error_of(
        model, "drn_d_22_slim", other_classes, path
    )
    # Half a classifier is not "no classifier".
    no_bias = {k: v for k, v in state.items() if k != "classifier.bias"}
    assert "missing 'classifier.bias'" in error_of(model, "drn_d_22_slim", no_bias, path)
    extra = {**state, "fc.weight": torch.zeros(3)}
    assert "unexpected 'fc.weight'" in error_of(model, "drn_d_22_slim", extra, path)
    assert "expected a state dict" in error_of(model, "drn_d_22_slim", {"model": state}, path)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'absent.pt'}: file not found")):
        load_initial_weights(model, "drn_d_22_slim", tmp_path / "absent.pt")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not a readable state dict")):
        load_initial_weights(model, "drn_d_22_slim", path)


def test_torchvision_resnet18_initialises_resnet18_imagenet(tmp_path):
    # torchvision's own architecture with random weights (nothing downloaded), its 1000-class
    # ImageNet classifier included.
    torch.manual_seed(0)
    theirs = perturbed(torchvision.models.resnet18(weights=None)).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(theirs.state_dict(), path)
    torch.manual_seed(1)
    ours = build_task_model("resnet18_imagenet", (3, 64, 64), 101).eval()
    classifier = ours.classifier.weight.clone()
    loaded = load_initial_weights(ours, "resnet18_imagenet", path)
    assert loaded.layout == "torchvision resnet18"
    assert loaded.kept_initialisation == ("classifier.weight", "classifier.bias")
    assert torch.equal(ours.classifier.weight, classifier)
    # The same body: equal pooled features on the same images.
    theirs.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.forward_features(x)[0], theirs(x), rtol=1e-5, atol=1e-6)
    assert check_initial_weights("resnet18_imagenet", (3, 224, 224), path, 101) == (
        "torchvision resnet18"
    )
    # A torchvision key our ResNet lacks is named in the file's naming.
    state = {**theirs.state_dict(), "layer5.0.conv1.weight": torch.zeros(1)}
    assert "unexpected 'layer5.0.conv1.weight'" in error_of(ours, "resnet18_imagenet", state, path)
    # A wrong shape is named by both names.
    state = dict(torchvision.models.resnet18(weights=None).state_dict())
    state["layer2.0.downsample.0.weight"] = torch.zeros(128, 64, 3, 3)
    assert (
        "'layer2.0.downsample.0.weight' (ours 'stages.1.0.shortcut.0.weight') has shape "
        "(128, 64, 3, 3), the model expects (128, 64, 1, 1)"
    ) in error_of(ours, "resnet18_imagenet", state, path)


def test_torchvision_vgg16_bn_initialises_vgg16_bn_224():
    # 138M parameters: compared in memory (the file round trip is the ResNet test's).
    torch.manual_seed(0)
    theirs = perturbed(torchvision.models.vgg16_bn(weights=None)).eval()
    torch.manual_seed(1)
    ours = build_task_model("vgg16_bn_224", (3, 32, 32), 256, dropout=0.5).eval()
    layout, state = match_state_dict(ours, "vgg16_bn_224", theirs.state_dict(), "vgg16_bn.pth")
    assert layout == "torchvision vgg16_bn"
    ours.load_state_dict(state, strict=False)
    assert set(ours.state_dict()) - set(state) == {"classifier.weight", "classifier.bias"}
    # The same body and hidden layers: equal embeddings (the input of the last dropout).
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = theirs.classifier[:5](torch.flatten(theirs.avgpool(theirs.features(x)), 1))
        assert torch.allclose(ours.embed(ours.forward_features(x)[0]), expected, atol=1e-5)


def test_released_drn_layout_initialises_drn_d_22():
    # fyu/drn's DRN-D-22 names (drn.py at d75db2e): levels layer0 ... layer8, BasicBlock
    # projections `downsample`, a 1x1-conv ImageNet classifier `fc`; no num_batches_tracked.
    widths = (16, 16, 32, 64, 128, 256, 512, 512, 512)

    def bn(prefix: str, c: int) -> dict:
        return {f"{prefix}.{k}": torch.rand(c) for k in ("weight", "bias", "running_mean")} | {
            f"{prefix}.running_var": torch.rand(c) + 0.5
        }

    released = {"layer0.0.weight": torch.randn(16, 3, 7, 7), **bn("layer0.1", 16)}
    for level in (1, 2, 7, 8):
        c_in, c = widths[level - 1], widths[level]
        released |= {
            f"layer{level}.0.weight": torch.randn(c, c_in, 3, 3),
            **bn(f"layer{level}.1", c),
        }
    for level in (3, 4, 5, 6):
        c_in, c = widths[level - 1], widths[level]
        for block in range(2):
            first = c_in if block == 0 else c
            name = f"layer{level}.{block}"
            released |= {
                f"{name}.conv1.weight": torch.randn(c, first, 3, 3),
                **bn(f"{name}.bn1", c),
            }
            released |= {f"{name}.conv2.weight": torch.randn(c, c, 3, 3), **bn(f"{name}.bn2", c)}
        released |= {
            f"layer{level}.0.downsample.0.weight": torch.randn(c, c_in, 1, 1),
            **bn(f"layer{level}.0.downsample.1", c),
        }
    released |= {"fc.weight": torch.randn(1000, 512, 1, 1), "fc.bias": torch.randn(1000)}
    with torch.device("meta"):
        model = build_segmentation_model("drn_d_22", (3, 64, 64), NUM_CLASSES)
    layout, state = match_state_dict(model, "drn_d_22", released, "drn_d_22-4bd2f8ea.pth")
    assert layout == "fyu/drn drn_d_22"
    assert torch.equal(state["groups.2.0.0.conv1.weight"], released["layer5.0.conv1.weight"])
    assert torch.equal(state["groups.3.1.0.weight"], released["layer8.0.weight"])
    # Everything but the classifier and the update counters comes from the file.
    left = {k for k in model.state_dict() if k not in state}
    assert {k for k in left if not k.endswith("num_batches_tracked")} == {
        "classifier.weight",
        "classifier.bias",
    }


def experiment(**train) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        "w",
        {
            "dataset": "moons",
            "model": "mlp",
            "initial_size": 100,
            "budget": 50,
            "stages": 2,
            "train": {"epochs": 2, "batch_size": 32, "milestones": [], **train},
        },
    )


def test_the_settings_hash_holds_the_files_contents_only_when_set(tmp_path):
    scratch = experiment()
    assert "init_weights" not in str(scratch.train_settings())
    assert experiment(init_weights="").train_settings() == scratch.train_settings()
    torch.manual_seed(0)
    state = build_task_model("mlp", (2,), 2).state_dict()
    torch.save(state, tmp_path / "a.pt")
    shutil.copyfile(tmp_path / "a.pt", tmp_path / "b.pt")
    a, b = (
        experiment(init_weights=str(tmp_path / "a.pt")),
        experiment(init_weights=str(tmp_path / "b.pt")),
    )
    # The same bytes under another name: the same hash; other bytes: another one.
    assert training_hash(a, PLAIN) == training_hash(b, PLAIN) != training_hash(scratch, PLAIN)
    torch.save({k: v + 1 for k, v in state.items()}, tmp_path / "b.pt")
    assert training_hash(a, PLAIN) != training_hash(b, PLAIN)
    with pytest.raises(ConfigError, match=r"train\.init_weights: .*absent\.pt"):
        training_hash(experiment(init_weights=str(tmp_path / "absent.pt")), PLAIN)


def test_the_config_check_refuses_weights_that_do_not_fit_before_any_job(tmp_path):
    torch.manual_seed(0)
    torch.save(build_task_model("mlp", (2,), 2).state_dict(), tmp_path / "mlp.pt")
    check_experiment(experiment(init_weights=str(tmp_path / "mlp.pt")))
    digits_cnn = build_task_model("digits_cnn", (1, 8, 8), 10).state_dict()
    torch.save(digits_cnn, tmp_path / "cnn.pt")
    with pytest.raises(
        ConfigError, match=r"experiments\.w\.train\.init_weights: .*cnn\.pt.*mlp"
    ) as info:
        check_experiment(experiment(init_weights=str(tmp_path / "cnn.pt")))
    # Before the dataset is prepared its number of classes is unknown, and not compared.
    assert "'classifier.weight' has shape (10, 128), the model expects (classes, 32)" in str(
        info.value
    )
    torch.save(build_task_model("mlp", (2,), 3).state_dict(), tmp_path / "mlp3.pt")
    three_classes = experiment(init_weights=str(tmp_path / "mlp3.pt"))
    check_experiment(three_classes)
    load_dataset("moons", tmp_path / "data")
    with pytest.raises(
        ConfigError, match=re.escape("has shape (3, 32), the model expects (2, 32)")
    ):
        check_experiment(three_classes, data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match=r"experiments\.w\.train\.init_weights: .*file not found"):
        check_experiment(experiment(init_weights=str(tmp_path / "absent.pt")))


def test_training_starts_from_the_given_weights(tmp_path):
    moons = load_dataset("moons", tmp_path / "data")
    torch.manual_seed(5)
    given = perturbed(build_task_model("mlp", (2,), 2))
    body = {k: v for k, v in given.state_dict().items() if not k.startswith("classifier.")}
    torch.save(body, tmp_path / "body.pt")
    first_states = []
    log: list[str] = []

    def record_first_forward(module, args):
        if not first_states and module.__class__.__name__ == "MLP":
            first_states.append({k: v.clone() for k, v in module.state_dict().items()})

    def first_state(exp: ExperimentConfig) -> dict:
        first_states.clear()
        idx = initial_indices(moons.info.n_train, exp.initial_size, 0)
        handle = nn.modules.module.register_module_forward_pre_hook(record_first_forward)
        try:
            train_task_learner(exp, PLAIN, moons, idx, moons.y_train[idx], 0, 0, "cpu", log.append)
        finally:
            handle.remove()
        return first_states[0]

    scratch = first_state(experiment())
    started = first_state(experiment(init_weights=str(tmp_path / "body.pt")))
    # The body is the file's; the classifier, absent from it, is the from-scratch one.
    assert started.keys() == scratch.keys()
    for key, value in started.items():
        expected = scratch[key] if key.startswith("classifier.") else body[key]
        assert torch.equal(value, expected), key
    assert not all(torch.equal(scratch[k], body[k]) for k in body)
    assert any(
        f"initial weights from {tmp_path / 'body.pt'} (tavaal layout); kept their "
        "initialisation: classifier.weight, classifier.bias" in line
        for line in log
    )


@pytest.mark.parametrize(
    "preset",
    [
        "tavaal_cityscapes",
        "vaal_cityscapes",
        "vaal_bdd100k",
        "vaal_ablation_bdd100k",
        "tavaal_caltech101",
        "vaal_caltech256",
        "vaal_imagenet",
    ],
)
def test_large_image_presets_say_they_start_from_scratch(preset):
    # What the header states is what the preset runs: no experiment sets initial weights.
    path = Path(__file__).parent.parent / "presets" / f"{preset}.yaml"
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    assert "# Initial weights: from scratch" in header
    experiments = yaml.safe_load(path.read_text())["experiments"]
    assert all(not exp.get("train", {}).get("init_weights") for exp in experiments.values())
