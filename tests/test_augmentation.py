import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tavaal import augmentation
from tavaal.augmentation import crop_and_resize, resized_crop_boxes, resized_crop_images
from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset
from tavaal.errors import ConfigError
from tavaal.pool import initial_indices
from tavaal.training import (
    ENSEMBLE,
    PLAIN,
    RANKING_RANKER,
    _augment,
    train_task_learner,
    training_hash,
)

QUADRANT_COLOURS = torch.tensor(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=torch.uint8
)


def quadrants(n: int = 1, size: int = 8) -> torch.Tensor:
    """n copies of a size × size image whose four quadrants have distinct colours."""
    half = size // 2
    image = torch.empty((size, size, 3), dtype=torch.uint8)
    image[:half, :half], image[:half, half:] = QUADRANT_COLOURS[0], QUADRANT_COLOURS[1]
    image[half:, :half], image[half:, half:] = QUADRANT_COLOURS[2], QUADRANT_COLOURS[3]
    return image.expand(n, -1, -1, -1).contiguous()


def twin(seed: int) -> tuple[torch.Generator, torch.Generator]:
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


def test_full_scale_square_crop_is_the_identity():
    images = torch.randint(0, 256, (6, 12, 12, 3), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = resized_crop_images(images, gen, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False)
    assert torch.equal(out, images)


def test_flip_only_is_torch_flip():
    images = torch.randint(0, 256, (16, 7, 9, 1), dtype=torch.uint8)
    whole = torch.tensor([[0, 0, 7, 9]]).expand(16, -1)
    flipped = crop_and_resize(images, whole, torch.ones(16, dtype=torch.bool))
    assert torch.equal(flipped, torch.flip(images, dims=[2]))
    square = images[:, :7, :7]
    out = resized_crop_images(square, torch.Generator().manual_seed(1), (1.0, 1.0), (1.0, 1.0))
    mirrored = [torch.equal(o, torch.flip(s, dims=[1])) for o, s in zip(out, square, strict=True)]
    unchanged = [torch.equal(o, s) for o, s in zip(out, square, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert any(mirrored) and any(unchanged)


def test_quarter_crop_shows_the_drawn_box():
    images = quadrants(64)
    gen, same = twin(3)
    boxes = resized_crop_boxes(64, 8, 8, same, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    out = resized_crop_images(images, gen, scale=(0.25, 0.25), ratio=(1.0, 1.0), hflip=False)
    assert (boxes[:, 2] == 4).all() and (boxes[:, 3] == 4).all()  # a 1/4-area square box
    aligned = 0
    for image, result, (top, left, height, width) in zip(images, out, boxes.tolist(), strict=True):
        crop = image[top : top + height, left : left + width]
        # The output's corners are the box's corner pixels: colours of the image, exactly.
        assert torch.equal(result[0, 0], crop[0, 0]) and torch.equal(result[-1, -1], crop[-1, -1])
        assert torch.equal(result[0, -1], crop[0, -1]) and torch.equal(result[-1, 0], crop[-1, 0])
        # Crop-then-resize: the box upsampled bilinearly, nothing from outside it.
        reference = F.interpolate(
            crop.permute(2, 0, 1)[None].float(), size=(8, 8), mode="bilinear", align_corners=False
        )
        reference = reference.round()[0].permute(1, 2, 0)
        assert (result.float() - reference).abs().max() <= 1
        if top % 4 == 0 and left % 4 == 0:  # exactly one quadrant: its single colour
            aligned += 1
            assert (result == crop[0, 0]).all()
    assert aligned  # the seeded draw holds quadrant-aligned boxes (1 in 6.25 per sample)


def fallback_box(h: int, w: int, ratio: tuple[float, float]) -> list[int]:
    """The largest box with an aspect ratio in `ratio`, centred."""
    width, height = w, h
    if w / h < ratio[0]:
        height = max(1, round(w / ratio[0]))
    elif w / h > ratio[1]:
        width = max(1, round(h * ratio[1]))
    return [(h - height) // 2, (w - width) // 2, height, width]


def from_range(h: int, w: int, box: list[int], scale, ratio) -> bool:
    """A box whose rounded sides can come from an area fraction in `scale` and an aspect ratio
    in `ratio` (each side within half a pixel of its exact length)."""
    _, _, height, width = box
    area, eps = h * w, 1e-4
    area_ok = (width - 0.5) * (height - 0.5) <= scale[1] * area * (1 + eps) and (width + 0.5) * (
        height + 0.5
    ) >= scale[0] * area * (1 - eps)
    ratio_ok = (width - 0.5) / (height + 0.5) <= ratio[1] * (1 + eps) and (
        height <= 0.5 or (width + 0.5) / (height - 0.5) >= ratio[0] * (1 - eps)
    )
    return area_ok and ratio_ok


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 64),
    w=st.integers(1, 64),
    scale=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    ratio=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)).map(sorted),
    seed=st.integers(0, 10_000),
)
def test_boxes_lie_in_the_image_and_in_their_ranges(h, w, scale, ratio, seed):
    boxes = resized_crop_boxes(50, h, w, torch.Generator().manual_seed(seed), scale, ratio)
    assert boxes.dtype == torch.int64 and boxes.shape == (50, 4)
    fallback = fallback_box(h, w, ratio)
    for box in boxes.tolist():
        top, left, height, width = box
        assert height >= 1 and width >= 1
        assert 0 <= top <= h - height and 0 <= left <= w - width
        assert box == fallback or from_range(h, w, box, scale, ratio), (box, fallback)


def test_boxes_spread_over_their_ranges():
    boxes = resized_crop_boxes(4000, 224, 224, torch.Generator().manual_seed(0)).double()
    area = boxes[:, 2] * boxes[:, 3] / 224**2
    aspect = boxes[:, 3] / boxes[:, 2]
    assert area.min() < 0.1 and area.max() > 0.95 and 0.45 < area.mean() < 0.6
    assert aspect.min() < 0.77 and aspect.max() > 1.3 and abs(aspect.log().mean()) < 0.02
    assert (boxes[:, 0] + boxes[:, 2]).max() <= 224 and boxes[:, 0].min() == 0


def test_no_box_fits_gives_the_centred_fallback():
    # A 4 × 40 strip: a box of aspect ratio in [0.5, 2] never fits at 90% of its area.
    boxes = resized_crop_boxes(5, 4, 40, torch.Generator().manual_seed(0), (0.9, 1.0), (0.5, 2.0))
    assert boxes.tolist() == [[0, 16, 4, 8]] * 5


def test_same_seed_same_bytes_and_shape_dtype_kept():
    images = torch.randint(0, 256, (10, 20, 14, 3), dtype=torch.uint8)
    a, b = twin(7)
    first = resized_crop_images(images, a)
    assert torch.equal(first, resized_crop_images(images, b))
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert first.device == images.device and first.is_contiguous()
    assert not torch.equal(first, resized_crop_images(images, torch.Generator().manual_seed(8)))
    # The stream advances the same with and without flips.
    c, d = twin(7)
    resized_crop_images(images, c, hflip=False)
    resized_crop_images(images, d, hflip=True)
    assert torch.equal(c.get_state(), d.get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_batch_device():
    images = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = resized_crop_images(images, gen)
    assert out.device == images.device and out.dtype == torch.uint8 and out.shape == images.shape
    same = torch.Generator(device="cuda").manual_seed(0)
    assert torch.equal(out, resized_crop_images(images, same))


def experiment(**train):
    return ExperimentConfig.from_dict(
        "e", {"dataset": "digits", "model": "digits_cnn", "train": train}
    )


def test_training_picks_the_configured_augmentation():
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    cfg = experiment(augmentation="resized_crop", crop_scale=[0.3, 0.6], hflip=False).train
    a, b = twin(0)
    expected = resized_crop_images(images, b, (0.3, 0.6), (0.75, 4 / 3), hflip=False)
    assert torch.equal(_augment(images, a, cfg), expected)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"crop_scale": [0.0, 1.0]}, "train.crop_scale: need 0 < min <= max <= 1"),
        ({"crop_scale": [0.5, 0.4]}, "train.crop_scale: need 0 < min <= max <= 1"),
        ({"crop_scale": [0.1, 1.5]}, "train.crop_scale: need 0 < min <= max <= 1"),
        ({"crop_ratio": [0.0, 1.0]}, "train.crop_ratio: need 0 < min <= max"),
        ({"crop_ratio": [2.0, 1.0]}, "train.crop_ratio: need 0 < min <= max"),
        ({"crop_ratio": [1.0]}, "train.crop_ratio: expected a list of 2 items"),
        ({"crop_scale": [0.1, "a"]}, r"train.crop_scale\[1\]: expected a number"),
        ({"augmentation": "cutout"}, "train.augmentation: 'cutout' is not one of"),
    ],
)
def test_bad_crop_settings_name_the_key(train, message):
    with pytest.raises(ConfigError, match=message):
        experiment(**train)


def test_default_training_hash_is_unchanged():
    # Hashes computed at c024125, before the augmentation option existed.
    exp = experiment()
    assert training_hash(exp, PLAIN) == "41989a7cd8a06eac"
    assert training_hash(exp, RANKING_RANKER) == "748d9c9de0bff0b7"
    assert training_hash(exp, ENSEMBLE) == "62bde79fa89a3865"
    other = ExperimentConfig.from_dict(
        "c",
        {
            "dataset": "cifar10",
            "model": "resnet18",
            "train": {"augment": False, "crop_padding": 2, "hflip": False, "epochs": 5},
        },
    )
    assert training_hash(other, PLAIN) == "7f8bf6fe7e67d8a4"
    # Crop ranges pad_crop never reads do not retrain; under resized_crop they do, and then
    # crop_padding is the unused one.
    assert training_hash(experiment(crop_scale=[0.5, 1.0]), PLAIN) == "41989a7cd8a06eac"
    resized = training_hash(experiment(augmentation="resized_crop"), PLAIN)
    assert resized != "41989a7cd8a06eac"
    assert training_hash(experiment(augmentation="resized_crop", crop_padding=0), PLAIN) == resized
    narrower = experiment(augmentation="resized_crop", crop_ratio=[1.0, 1.0])
    assert training_hash(narrower, PLAIN) != resized


def test_default_ratio_survives_the_schema_round_trip():
    assert math.isclose(experiment().train.crop_ratio[1], 4 / 3)
    assert experiment(crop_ratio=[0.75, 1.3333333333333333]).train == experiment().train


def test_training_with_resized_crops_is_deterministic(tmp_path, monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return resized_crop_images(*args, **kwargs)

    # The classification task (`tavaal.tasks.classification`) reads it from its module.
    monkeypatch.setattr(augmentation, "resized_crop_images", counted)

    digits = load_dataset("digits", tmp_path)
    exp = ExperimentConfig.from_dict(
        "d",
        {
            "dataset": "digits",
            "model": "digits_cnn",
            "initial_size": 64,
            "train": {
                "epochs": 1,
                "batch_size": 32,
                "milestones": [],
                "augmentation": "resized_crop",
            },
        },
    )
    idx = initial_indices(digits.info.n_train, exp.initial_size, 0)

    def weights():
        checkpoint, _ = train_task_learner(
            exp, PLAIN, digits, idx, digits.y_train[idx], 0, 0, "cpu", lambda line: None
        )
        return checkpoint["model"]

    first, again = weights(), weights()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert calls == [(32, 8, 8, 1)] * 4  # two batches per epoch, two trainings
