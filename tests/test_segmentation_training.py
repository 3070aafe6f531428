"""Segmentation training and evaluation through the task interface (`tavaal.tasks`), on the
offline `seg_shapes` dataset: losses, mIoU against a hand-made confusion matrix, determinism,
crops, the ranker on DRN's taps, index files and the checks of experiments.

Most trainings use `drn_tiny_test`, a DRN-D-22 (same levels, blocks and dilations) with narrow
levels, registered here for the tests only: DRN-D-22's widths cost ~2 s a step of 16 images on
one core, the narrow one ~0.2 s. The full `drn_d_22` takes one ranker step below.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tavaal.config import ExperimentConfig
from tavaal.data import IGNORE_INDEX, load_dataset, to_tensor_batch
from tavaal.errors import ConfigError, IndexFileError
from tavaal.losses import ranking_loss
from tavaal.models import build_ranker
from tavaal.models import drn as drn_module
from tavaal.models.drn import DRN, DRN_BLOCKS, build_segmentation_model
from tavaal.pool import read_labeled
from tavaal.stage import experiment_oracle, run_init_pool, run_train
from tavaal.tasks import get_task, task_of
from tavaal.training import (
    ENSEMBLE,
    PLAIN,
    RANKING_RANKER,
    load_task_models,
    train_task_learner,
    training_hash,
)
from tavaal.validation import check_experiment

TINY = "drn_tiny_test"
TINY_WIDTHS = (8, 8, 8, 16, 16, 32, 32, 32, 32)


def _tiny(input_shape, num_classes, dropout=0.0):
    return DRN(input_shape[0], num_classes, DRN_BLOCKS["d_22"], dropout, TINY_WIDTHS)


@pytest.fixture(scope="module", autouse=True)
def tiny_model_registered():
    """`drn_tiny_test` is known while this file's tests run, and only then (other files list
    the registry)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(drn_module.SEGMENTATION_MODELS._entries, TINY, _tiny)
        yield


SEG = get_task("segmentation")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    return data_dir, load_dataset("seg_shapes", data_dir)


def seg_exp(model=TINY, **train):
    settings_ = {
        "epochs": 6,
        "batch_size": 16,
        "optimizer": "adam",
        "lr": 0.01,
        "weight_decay": 0.0,
        "milestones": [],
        **train,
    }
    return ExperimentConfig.from_dict(
        "s",
        {
            "dataset": "seg_shapes",
            "model": model,
            "methods": ["random"],
            "initial_size": 32,
            "train": settings_,
            "ranker": {"detach_epoch": 100},
            "query": {"ensemble_size": 2, "inference_batch_size": 64},
        },
    )


def small_test_split(dataset, n=48):
    """The first `n` test images: evaluation of the whole split (200) is not what is tested."""
    return dataclasses.replace(dataset, x_test=dataset.x_test[:n], y_test=dataset.y_test[:n])


def train(exp, dataset, recipe=PLAIN, n=32, seed=0, log=None):
    indices = np.arange(n, dtype=np.int64)
    labels = SEG.label_table(dataset.y_train)[indices]
    return train_task_learner(
        exp, recipe, dataset, indices, labels, seed, 0, "cpu", log or (lambda line: None)
    )


def hand_scores(predicted: np.ndarray, truth: np.ndarray, k: int):
    """Per-class IoU, mIoU and pixel accuracy from a confusion matrix counted in numpy."""
    keep = truth != IGNORE_INDEX
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (truth[keep].astype(np.int64), predicted[keep].astype(np.int64)), 1)
    iou = []
    for c in range(k):
        union = matrix[c].sum() + matrix[:, c].sum() - matrix[c, c]
        iou.append(None if union == 0 else matrix[c, c] / union)
    defined = [v for v in iou if v is not None]
    return iou, sum(defined) / len(defined), np.trace(matrix) / matrix.sum(), matrix


def test_tiny_drn_fits_a_fixed_batch_far_above_the_background_baseline(shapes):
    _, dataset = shapes
    # Measured on the 16 training images themselves: can the loop fit a fixed batch (one batch
    # per epoch, no augmentation)? A held-out mIoU needs far more training on these shapes.
    fixed = dataclasses.replace(dataset, x_test=dataset.x_train[:16], y_test=dataset.y_train[:16])
    lines = []
    _, metrics = train(seg_exp(epochs=25, lr=0.003, augment=False), fixed, n=16, log=lines.append)
    losses = [float(line.split(" loss ")[1].split()[0]) for line in lines if " epoch " in line]
    assert len(losses) == 25
    assert losses[-1] < 0.25 * losses[0]
    # Predicting background everywhere: IoU of class 0 = its pixel share, 0 for the three shapes
    # (all present in these images).
    masks = np.asarray(fixed.y_test)
    assert set(np.unique(masks).tolist()) == {0, 1, 2, 3}
    background = float((masks == 0).sum() / (masks != IGNORE_INDEX).sum())
    assert metrics["miou"] > background / 4 + 0.4
    assert all(iou > 0.5 for iou in metrics["per_class_iou"])
    assert any("test mIoU" in line for line in lines)


def test_evaluate_matches_a_hand_made_confusion_matrix(shapes):
    _, dataset = shapes
    dataset = small_test_split(dataset)
    exp = seg_exp(epochs=2)
    checkpoint, metrics = train(exp, dataset)
    model = load_task_models_from(checkpoint, exp, dataset)
    with torch.no_grad():
        logits = model(to_tensor_batch(np.asarray(dataset.x_test), dataset.info)).logits
    truth = np.array(dataset.y_test)
    iou, miou, pixel_accuracy, matrix = hand_scores(logits.argmax(1).numpy(), truth, 4)
    assert metrics["metric"] == "miou" and "accuracy" not in metrics
    assert metrics["per_class_iou"] == pytest.approx(iou)
    assert metrics["miou"] == pytest.approx(miou)
    assert metrics["pixel_accuracy"] == pytest.approx(pixel_accuracy)
    assert metrics["confusion"] == matrix.tolist()
    assert metrics["test_pixels"] == int(matrix.sum())
    ce = F.cross_entropy(logits, torch.from_numpy(truth).long(), ignore_index=IGNORE_INDEX)
    assert metrics["test_loss"] == pytest.approx(float(ce), rel=1e-5)


def load_task_models_from(checkpoint, exp, dataset, member=0):
    model = SEG.build_model(exp, dataset.info)
    state = checkpoint["model"] if member == 0 else checkpoint["ensemble_members"][member - 1]
    model.load_state_dict(state)
    return model.eval()


def test_an_ensemble_predicts_with_its_mean_softmax(shapes):
    _, dataset = shapes
    dataset = small_test_split(dataset, 16)
    exp = seg_exp(epochs=1)
    checkpoint, metrics = train(exp, dataset, recipe=ENSEMBLE)
    assert len(checkpoint["ensemble_members"]) == 1
    inputs = to_tensor_batch(np.asarray(dataset.x_test), dataset.info)
    truth = np.array(dataset.y_test)
    with torch.no_grad():
        logits = [load_task_models_from(checkpoint, exp, dataset, m)(inputs).logits for m in (0, 1)]
    probs = torch.stack([F.softmax(x, 1) for x in logits]).mean(0)
    _, miou, _, _ = hand_scores(probs.argmax(1).numpy(), truth, 4)
    assert metrics["miou"] == pytest.approx(miou)
    members = [hand_scores(x.argmax(1).numpy(), truth, 4)[1] for x in logits]
    assert metrics["member_miou"] == pytest.approx(members)
    nll = F.nll_loss(probs.clamp_min(1e-12).log(), torch.from_numpy(truth).long())
    assert metrics["test_loss"] == pytest.approx(float(nll), rel=1e-5)


def test_same_seed_same_weights_other_seed_other_weights(shapes):
    _, dataset = shapes
    dataset = small_test_split(dataset, 8)
    exp = seg_exp(epochs=1, crop_size=48)
    first, first_metrics = train(exp, dataset)
    again, again_metrics = train(exp, dataset)
    other, _ = train(exp, dataset, seed=1)
    assert all(torch.equal(first["model"][k], again["model"][k]) for k in first["model"])
    assert first_metrics["miou"] == again_metrics["miou"]
    assert not all(torch.equal(first["model"][k], other["model"][k]) for k in first["model"])


def test_crop_size_crops_images_and_masks_together(shapes, monkeypatch):
    _, dataset = shapes
    info = dataset.info
    raw = torch.from_numpy(np.array(dataset.x_train[:6]))
    masks = torch.from_numpy(np.array(dataset.y_train[:6]))
    cfg = seg_exp(crop_size=24, hflip=False).train
    images, cropped = SEG.augment(raw, masks, torch.Generator().manual_seed(3), cfg, info)
    assert images.shape == (6, 3, 24, 24) and cropped.shape == (6, 24, 24)
    assert cropped.dtype == torch.uint8
    full = to_tensor_batch(raw, info)
    for i in range(6):
        # The image's window and the mask's window are the same one.
        windows = [
            (y, x)
            for y in range(64 - 24 + 1)
            for x in range(64 - 24 + 1)
            if torch.equal(cropped[i], masks[i, y : y + 24, x : x + 24])
            and torch.equal(images[i], full[i, :, y : y + 24, x : x + 24])
        ]
        assert windows, f"sample {i}: no common window of image and mask"

    # In training: the loss sees crops of train.crop_size, and no crop without it.
    seen = []
    original = type(SEG).per_sample_loss

    def recorded(self, logits, targets):
        seen.append((tuple(logits.shape), tuple(targets.shape)))
        return original(self, logits, targets)

    monkeypatch.setattr(type(SEG), "per_sample_loss", recorded)
    small = small_test_split(dataset, 4)
    train(seg_exp(epochs=1, crop_size=40), small, n=16)
    assert seen == [((16, 4, 40, 40), (16, 40, 40))]
    seen.clear()
    train(seg_exp(epochs=1), small, n=16)
    assert seen == [((16, 4, 64, 64), (16, 64, 64))]


def test_a_crop_larger_than_the_image_is_padded_and_ignored(shapes):
    _, dataset = shapes
    raw = torch.from_numpy(np.array(dataset.x_train[:2]))
    masks = torch.from_numpy(np.array(dataset.y_train[:2]))
    cfg = seg_exp(crop_size=80).train
    images, cropped = SEG.augment(raw, masks, torch.Generator().manual_seed(0), cfg, dataset.info)
    assert cropped.shape == (2, 80, 80)
    # 80^2 - 64^2 pixels lie outside each image: ignored in the mask, the mean (0) in the image.
    assert int((cropped == IGNORE_INDEX).sum()) == 2 * (80 * 80 - 64 * 64)
    assert torch.all(images.permute(0, 2, 3, 1)[cropped == IGNORE_INDEX] == 0)


def test_the_ranker_trains_on_drn_taps(shapes, tmp_path):
    _, dataset = shapes
    dataset = small_test_split(dataset, 8)
    exp = seg_exp(epochs=2)
    untrained = build_ranker(SEG.build_model(exp, dataset.info), dataset.info.input_shape)
    checkpoint, _ = train(exp, dataset, recipe=RANKING_RANKER)
    assert checkpoint["ranker"] is not None
    trained = reload_ranking_models(checkpoint, exp, dataset, tmp_path)
    assert trained.ranker is not None
    assert trained.ranker.tap_channels == [16, 16, 32, 32]
    assert any(
        not torch.equal(value, untrained.state_dict()[key])
        for key, value in checkpoint["ranker"].items()
    )


def reload_ranking_models(checkpoint, exp, dataset, folder):
    """The checkpoint read back as a training job's file (`load_task_models`)."""
    path = folder / "model.pt"
    torch.save(checkpoint, path)
    return load_task_models(path, exp, RANKING_RANKER, dataset.info)


def test_full_drn_d_22_ranker_step_on_its_four_taps():
    torch.manual_seed(0)
    model = build_segmentation_model("drn_d_22", (3, 32, 32), 4)
    ranker = build_ranker(model, (3, 32, 32))
    assert ranker.tap_channels == [64, 128, 512, 512]
    x = torch.randn(4, 3, 32, 32)
    target = torch.randint(0, 4, (4, 32, 32))
    target[0, :8] = IGNORE_INDEX
    out = model(x)
    per_image = SEG.per_sample_loss(out.logits, target)
    predicted = ranker(out.features)
    assert predicted.shape == (4,)
    head_before = ranker.head.weight.detach().clone()
    stem_before = model.groups[0][0][0][0].weight.detach().clone()
    optimizer = torch.optim.SGD([*model.parameters(), *ranker.parameters()], lr=0.01)
    loss = SEG.batch_loss(out.logits, target, per_image) + ranking_loss(predicted, per_image)
    loss.backward()
    optimizer.step()
    assert not torch.equal(ranker.head.weight, head_before)
    assert not torch.equal(model.groups[0][0][0][0].weight, stem_before)


def test_run_train_writes_segmentation_metrics(shapes, tmp_path):
    data_dir, dataset = shapes
    exp = seg_exp(epochs=1)
    labeled = tmp_path / "labeled.parquet"
    run_init_pool(exp, 0, data_dir, labeled, log=lambda line: None)
    # The index file records each image's labeled-pixel count; training reads the masks.
    table = read_labeled(labeled, SEG.label_table(dataset.y_train), 0)
    expected = (np.asarray(dataset.y_train[table.indices]) != IGNORE_INDEX).sum(axis=(1, 2))
    np.testing.assert_array_equal(table.labels, expected)
    metrics = run_train(
        exp,
        PLAIN,
        0,
        0,
        labeled,
        data_dir,
        tmp_path / "model.pt",
        tmp_path / "metrics.json",
        device="cpu",
        log=lambda line: None,
    )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert written["metric"] == "miou" and "accuracy" not in written
    assert 0.0 <= written["miou"] <= 1.0 and 0.0 <= written["pixel_accuracy"] <= 1.0
    assert len(written["per_class_iou"]) == 4
    assert all(v is None or 0.0 <= v <= 1.0 for v in written["per_class_iou"])
    assert written["test_loss"] > 0 and written["labels"] == 32
    assert written["test_pixels"] == dataset.info.n_test * 64 * 64
    assert 0.0 < written["labeled_class_entropy"] <= math.log(4)
    assert written["settings_hash"] == training_hash(exp, PLAIN)
    trained = load_task_models(tmp_path / "model.pt", exp, PLAIN, dataset.info)
    assert type(trained.models[0]).__name__ == "DRN"


def test_an_index_file_of_other_masks_is_refused(shapes, tmp_path):
    data_dir, dataset = shapes
    exp = seg_exp()
    labeled = tmp_path / "labeled.parquet"
    run_init_pool(exp, 0, data_dir, labeled, log=lambda line: None)
    answers = SEG.label_table(dataset.y_train).copy()
    index = int(read_labeled(labeled, answers, 0).indices[0])
    answers[index] += 1
    with pytest.raises(IndexFileError, match=f"index {index} has label"):
        read_labeled(labeled, answers, 0)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"oracle": {"noise": 0.1, "confusion": "any"}}, "oracle.noise"),
        ({"initial_excluded_classes": 1}, "initial_excluded_classes"),
    ],
)
def test_a_segmentation_oracle_answers_true_masks_only(shapes, change, key):
    _, dataset = shapes
    exp = ExperimentConfig.from_dict(
        "s", {"dataset": "seg_shapes", "model": TINY, "methods": ["random"], **change}
    )
    with pytest.raises(ConfigError, match=f"experiments.s.{key}:"):
        experiment_oracle(exp, dataset, 0)


@pytest.mark.parametrize(
    ("dataset", "model", "message"),
    [
        ("cifar10", "drn_d_22", "experiments.x.model: drn_d_22 is a segmentation model"),
        ("seg_shapes", "resnet18", "experiments.x.model: resnet18 is a classification model"),
        ("seg_shapes", "nope", "experiments.x.model: unknown task model 'nope'; known: drn_d_"),
    ],
)
def test_the_model_must_fit_the_task(dataset, model, message):
    exp = ExperimentConfig.from_dict("x", {"dataset": dataset, "model": model})
    with pytest.raises(ConfigError, match=message):
        check_experiment(exp)


def test_crop_size_is_for_segmentation_and_keeps_old_hashes():
    with pytest.raises(ConfigError, match="experiments.x.train.crop_size: the crop of"):
        check_experiment(
            ExperimentConfig.from_dict(
                "x", {"dataset": "cifar10", "model": "resnet18", "train": {"crop_size": 16}}
            )
        )
    with pytest.raises(ConfigError, match="experiments.x.train.crop_size: must be >= 0"):
        ExperimentConfig.from_dict(
            "x", {"dataset": "cifar10", "model": "resnet18", "train": {"crop_size": -1}}
        )
    plain = seg_exp()
    assert "crop_size" not in plain.train_settings()
    assert seg_exp(crop_size=0).train_settings() == plain.train_settings()
    assert training_hash(seg_exp(crop_size=32), PLAIN) != training_hash(plain, PLAIN)


def test_task_of_follows_the_dataset(shapes):
    _, dataset = shapes
    assert task_of(dataset.info) is SEG
    assert (SEG.primary_metric, SEG.metric_label) == ("miou", "test mIoU")
    assert TINY in SEG.model_names() and "resnet18" not in SEG.model_names()
    with pytest.raises(ConfigError, match="unknown task 'detection'"):
        get_task("detection")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    side=st.integers(1, 6),
    ignored=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_batch_loss_is_the_pixel_mean_and_correct_counts_labeled_pixels(n, side, ignored, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, side, side, generator=gen)
    targets = torch.randint(0, 3, (n, side, side), generator=gen, dtype=torch.uint8)
    targets[torch.rand(n, side, side, generator=gen) < ignored] = IGNORE_INDEX
    per_image = SEG.per_sample_loss(logits, targets)
    loss = SEG.batch_loss(logits, targets, per_image)
    labeled = targets != IGNORE_INDEX
    if labeled.any():
        expected = F.cross_entropy(logits, targets.long(), ignore_index=IGNORE_INDEX)
        assert float(loss) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    else:
        assert float(loss) == 0.0
    right, total = SEG.correct(logits, targets)
    assert int(total) == int(labeled.sum())
    assert int(right) == int(((logits.argmax(1) == targets) & labeled).sum())


def test_the_tasks_load_no_torch_for_a_labeling_job():
    """The initial-pool job asks the task what an index file records; it stays torch-free."""
    import subprocess
    import sys

    code = "import sys, tavaal.stage, tavaal.tasks; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
