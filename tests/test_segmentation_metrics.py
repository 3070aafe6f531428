"""tavaal.segmentation: confusion matrix and IoU against hand-computed values, the per-image
scores of the ranker and the entropy method, and the joint image + mask augmentation."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tavaal.segmentation import (
    ConfusionMatrix,
    SegmentationScores,
    confusion_matrix,
    crop_flip,
    mean_pixel_entropy,
    per_image_cross_entropy,
)

# A 3 x 4 image with 3 classes; 255 marks the two unlabeled pixels (last column).
TARGET = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, 255], [1, 1, 2, 255]]])
PRED = torch.tensor([[[0, 1, 1, 1], [0, 2, 0, 2], [1, 0, 2, 0]]])
# Rows: true class, columns: predicted class, over the 10 labeled pixels, counted by hand.
HAND_CONFUSION = [[2, 1, 0], [1, 3, 0], [1, 0, 2]]
# IoU = TP / (row sum + column sum - TP):
HAND_IOU = (2 / (3 + 4 - 2), 3 / (4 + 4 - 3), 2 / (3 + 2 - 2))  # 2/5, 3/5, 2/3


def test_confusion_matrix_and_iou_by_hand():
    matrix = confusion_matrix(PRED, TARGET, num_classes=3)
    assert matrix.dtype == torch.int64
    assert matrix.tolist() == HAND_CONFUSION
    scores = SegmentationScores.from_confusion(matrix)
    assert scores.iou == pytest.approx(HAND_IOU)
    assert scores.iou == pytest.approx((2 / 5, 3 / 5, 2 / 3))
    assert scores.mean_iou == pytest.approx(5 / 9)  # (2/5 + 3/5 + 2/3) / 3
    assert scores.pixel_accuracy == pytest.approx(7 / 10)
    assert scores.pixels == 10


def test_ignored_pixels_count_nowhere():
    # Any prediction on the 255 pixels leaves the matrix unchanged.
    other = PRED.clone()
    other[TARGET == 255] = torch.tensor([1, 1])
    assert confusion_matrix(other, TARGET, 3).tolist() == HAND_CONFUSION
    # Another ignore label: 255 would then be an invalid class.
    target = torch.where(TARGET == 255, torch.tensor(-1), TARGET)
    assert confusion_matrix(PRED, target, 3, ignore_index=-1).tolist() == HAND_CONFUSION
    with pytest.raises(ValueError, match=r"in \[0, 3\) or be -1"):
        confusion_matrix(PRED, TARGET, 3, ignore_index=-1)


def test_absent_classes():
    # Class 3 is in neither predictions nor targets: no IoU, and not in the mean.
    scores = SegmentationScores.from_confusion(confusion_matrix(PRED, TARGET, num_classes=4))
    assert scores.iou[:3] == pytest.approx(HAND_IOU)
    assert scores.iou[3] is None
    assert scores.mean_iou == pytest.approx(5 / 9)
    # Predicted once but never true: IoU 0, counted in the mean; class 0 loses that pixel.
    pred = PRED.clone()
    pred[0, 0, 0] = 3  # a true 0 predicted as 3
    scores = SegmentationScores.from_confusion(confusion_matrix(pred, TARGET, num_classes=4))
    assert scores.iou == pytest.approx((1 / 5, 3 / 5, 2 / 3, 0.0))  # 1 / (3 + 3 - 1)
    assert scores.mean_iou == pytest.approx((1 / 5 + 3 / 5 + 2 / 3 + 0) / 4)
    # True but never predicted: IoU 0 as well.
    target = TARGET.clone()
    target[0, 1, 3] = 3  # a formerly ignored pixel, predicted 2
    scores = SegmentationScores.from_confusion(confusion_matrix(PRED, target, num_classes=4))
    assert scores.iou == pytest.approx((2 / 5, 3 / 5, 2 / 4, 0.0))


def test_to_dict_is_json_safe():
    scores = SegmentationScores.from_confusion(confusion_matrix(PRED, TARGET, num_classes=4))
    record = json.loads(json.dumps(scores.to_dict(["road", "car", "sky", "bus"]), allow_nan=False))
    assert record["per_class_iou"][:3] == pytest.approx(HAND_IOU)
    assert record["per_class_iou"][3] is None
    assert record["mean_iou"] == pytest.approx(5 / 9)
    assert record["pixel_accuracy"] == pytest.approx(0.7)
    assert record["pixels"] == 10
    assert record["class_names"] == ["road", "car", "sky", "bus"]
    assert record["confusion"] == [[*row, 0] for row in HAND_CONFUSION] + [[0, 0, 0, 0]]
    # No labeled pixel at all: every score is None.
    empty = ConfusionMatrix(3).compute().to_dict()
    assert empty["mean_iou"] is None and empty["pixel_accuracy"] is None
    assert empty["per_class_iou"] == [None, None, None]
    json.dumps(empty, allow_nan=False)
    with pytest.raises(ValueError, match="2 class names for 4 classes"):
        scores.to_dict(["road", "car"])


def test_logits_are_reduced_by_argmax():
    logits = F.one_hot(PRED, 3).permute(0, 3, 1, 2).float() * 2.0 - 0.5
    assert confusion_matrix(logits, TARGET, 3).tolist() == HAND_CONFUSION
    with pytest.raises(ValueError, match="do not match targets"):
        confusion_matrix(logits[0], TARGET, 3)


def test_accumulation_over_batches_equals_one_batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn((6, 5, 7, 9), generator=gen)
    target = torch.randint(0, 5, (6, 7, 9), generator=gen)
    target[torch.rand((6, 7, 9), generator=gen) < 0.2] = 255
    whole = ConfusionMatrix(5)
    whole.update(logits, target)
    parts = ConfusionMatrix(5)
    parts.update(logits[:2], target[:2])
    parts.update(logits[2:].argmax(dim=1), target[2:])  # predictions work as well as logits
    assert torch.equal(parts.matrix, whole.matrix)
    assert parts.compute() == whole.compute()
    assert int(whole.matrix.sum()) == int((target != 255).sum())


def test_invalid_classes_are_errors():
    with pytest.raises(ValueError, match=r"targets in \[0, 7\]"):
        confusion_matrix(PRED, torch.where(TARGET == 2, torch.tensor(7), TARGET), 3)
    with pytest.raises(ValueError, match=r"predictions in \[0, 3\]"):
        confusion_matrix(torch.where(PRED == 2, torch.tensor(3), PRED), TARGET, 3)
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(PRED[:, :2], TARGET, 3)


@st.composite
def labelings(draw):
    k = draw(st.integers(1, 5))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    values = st.lists(st.integers(0, k - 1), min_size=n * h * w, max_size=n * h * w)
    pred = torch.tensor(draw(values)).view(n, h, w)
    target = torch.tensor(draw(values)).view(n, h, w)
    ignored = torch.tensor(draw(st.lists(st.booleans(), min_size=n * h * w, max_size=n * h * w)))
    target[ignored.view(n, h, w)] = 255
    return k, pred, target


@settings(max_examples=60, deadline=None)
@given(labelings())
def test_iou_properties(case):
    k, pred, target = case
    matrix = confusion_matrix(pred, target, k)
    # The matrix equals a count by a plain loop.
    expected = [[0] * k for _ in range(k)]
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist(), strict=True):
        if t != 255:
            expected[t][p] += 1
    assert matrix.tolist() == expected
    scores = SegmentationScores.from_confusion(matrix)
    labeled = int((target != 255).sum())
    if labeled == 0:
        assert scores.mean_iou is None and scores.pixel_accuracy is None
    else:
        assert 0.0 <= scores.mean_iou <= 1.0
        assert 0.0 <= scores.pixel_accuracy <= 1.0
        assert all(v is None or 0.0 <= v <= 1.0 for v in scores.iou)
    # Perfect predictions (anything on the ignored pixels): mIoU and accuracy 1, and exactly the
    # classes that occur in the targets have an IoU.
    perfect = SegmentationScores.from_confusion(
        confusion_matrix(target.clamp(max=k - 1), target, k)
    )
    present = set(target[target != 255].tolist())
    assert [v is not None for v in perfect.iou] == [c in present for c in range(k)]
    if labeled:
        assert perfect.mean_iou == 1.0 and perfect.pixel_accuracy == 1.0


def test_per_image_cross_entropy_matches_a_loop():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn((4, 6, 5, 7), generator=gen)
    target = torch.randint(0, 6, (4, 5, 7), generator=gen)
    target[torch.rand((4, 5, 7), generator=gen) < 0.3] = 255
    target[3] = 255  # an image without labeled pixels
    losses = per_image_cross_entropy(logits, target.to(torch.uint8))
    assert losses.shape == (4,)
    for i in range(3):
        expected = F.cross_entropy(logits[i : i + 1], target[i : i + 1], ignore_index=255)
        assert losses[i].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses[3].item() == 0.0
    # The logits on ignored pixels play no part.
    changed = logits.clone()
    changed[(target == 255)[:, None].expand_as(logits)] = 100.0
    assert torch.allclose(per_image_cross_entropy(changed, target), losses)


def test_mean_pixel_entropy():
    for k in (2, 19):
        uniform = torch.full((3, k, 4, 5), 0.7)
        assert torch.allclose(mean_pixel_entropy(uniform), torch.full((3,), math.log(k)))
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn((2, 4, 3, 3), generator=gen)
    expected = [
        torch.distributions.Categorical(logits=logits[i].permute(1, 2, 0)).entropy().mean()
        for i in range(2)
    ]
    assert torch.allclose(mean_pixel_entropy(logits), torch.stack(expected))
    # Confident everywhere: about 0; half the pixels uniform: half of log K.
    confident = torch.zeros((1, 4, 2, 2))
    confident[:, 0] = 50.0
    assert mean_pixel_entropy(confident).item() == pytest.approx(0.0, abs=1e-12)
    confident[:, :, 0] = 0.0  # the first row uniform
    assert mean_pixel_entropy(confident).item() == pytest.approx(math.log(4) / 2, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Joint augmentation


def coordinate_batch(n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose channels hold (row, column, sample) and masks that are a function of
    (row, column): what a pixel was, and where it came from, can be read back after cropping."""
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    images = torch.stack([torch.stack([rows, cols, torch.full((h, w), i)]) for i in range(n)]).to(
        torch.uint8
    )
    masks = ((rows * 7 + cols) % 19).expand(n, h, w).to(torch.uint8)
    return images, masks


def twin(seed: int) -> tuple[torch.Generator, torch.Generator]:
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


def test_same_seed_same_bytes():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 20, 30), generator=gen, dtype=torch.uint8)
    masks = torch.randint(0, 19, (5, 20, 30), generator=gen).to(torch.int64)
    for crop in (12, (25, 40)):  # inside the image; larger than it (padded)
        a, b = twin(7)
        out_a, out_b = crop_flip(images, masks, crop, a), crop_flip(images, masks, crop, b)
        assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
        assert torch.equal(a.get_state(), b.get_state())
    float_images = images.float() / 255
    a, b = twin(8)
    assert torch.equal(
        crop_flip(float_images, masks, 12, a)[0], crop_flip(float_images, masks, 12, b)[0]
    )
    other = crop_flip(images, masks, 12, torch.Generator().manual_seed(9))
    assert not torch.equal(
        other[0], crop_flip(images, masks, 12, torch.Generator().manual_seed(7))[0]
    )


def test_crop_is_a_window_and_image_and_mask_move_together():
    n, h, w, crop = 32, 10, 14, (6, 9)
    images, masks = coordinate_batch(n, h, w)
    out_images, out_masks = crop_flip(images, masks, crop, torch.Generator().manual_seed(3))
    assert out_images.shape == (n, 3, 6, 9) and out_images.dtype == torch.uint8
    assert out_masks.shape == (n, 6, 9) and out_masks.dtype == torch.uint8
    rows, cols = out_images[:, 0].long(), out_images[:, 1].long()
    assert torch.equal(out_images[:, 2], images[:, 2, :6, :9])  # each sample stays itself
    # The mask pixel is the one of the image pixel that landed there.
    assert torch.equal(out_masks, ((rows * 7 + cols) % 19).to(torch.uint8))
    # Contiguous rows; columns contiguous, increasing or (flipped) decreasing.
    top, left_or_right = rows[:, 0, 0], cols[:, 0, 0]
    assert torch.equal(rows, top[:, None, None] + torch.arange(6)[None, :, None].expand(n, 6, 9))
    step = cols[:, 0, 1] - cols[:, 0, 0]
    assert set(step.tolist()) == {-1, 1}  # both flipped and unflipped samples occur
    expected_cols = left_or_right[:, None, None] + step[:, None, None] * torch.arange(9)
    assert torch.equal(cols, expected_cols.expand(n, 6, 9))
    assert int(top.max()) <= h - 6 and int(top.min()) >= 0
    assert int(cols.min()) >= 0 and int(cols.max()) <= w - 1


def test_flip_maps_pixel_r_c_to_r_w_minus_1_minus_c():
    # Crop = image size: each sample is either unchanged or mirrored, image and mask alike.
    gen = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (16, 2, 5, 7), generator=gen, dtype=torch.uint8)
    masks = torch.randint(0, 19, (16, 5, 7), generator=gen).to(torch.uint8)
    out_images, out_masks = crop_flip(images, masks, (5, 7), torch.Generator().manual_seed(5))
    flipped = [
        torch.equal(o, torch.flip(i, dims=[-1])) for o, i in zip(out_images, images, strict=True)
    ]
    kept = [torch.equal(o, i) for o, i in zip(out_images, images, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    for i in range(16):
        expected = torch.flip(masks[i], dims=[-1]) if flipped[i] else masks[i]
        assert torch.equal(out_masks[i], expected)
        if flipped[i]:
            assert out_images[i, :, 2, 0].tolist() == images[i, :, 2, 6].tolist()
            assert out_masks[i, 2, 0] == masks[i, 2, 6]
    # hflip=False: the same windows (the coins are still drawn), nothing mirrored.
    plain = crop_flip(images, masks, (5, 7), torch.Generator().manual_seed(5), hflip=False)
    assert torch.equal(plain[0], images) and torch.equal(plain[1], masks)


def test_mask_values_are_never_interpolated():
    gen = torch.Generator().manual_seed(6)
    values = torch.tensor([0, 3, 7, 18, 255])
    masks = values[torch.randint(0, 5, (8, 9, 11), generator=gen)]
    images = torch.rand((8, 3, 9, 11), generator=gen)
    for crop in ((5, 6), (9, 11), (12, 15)):
        out_images, out_masks = crop_flip(images, masks, crop, gen)
        assert out_masks.dtype == torch.int64
        assert set(out_masks.unique().tolist()) <= set(values.tolist())
        # Every image value is one of the input's (or the 0 fill): moved, never blended.
        assert set(out_images.unique().tolist()) <= set(images.unique().tolist()) | {0.0}


def test_padding_when_the_image_is_smaller_than_the_crop():
    n, h, w, crop = 24, 4, 5, (6, 8)
    images, masks = coordinate_batch(n, h, w)
    images = images + 1  # so that 0 in the output can only be the fill
    out_images, out_masks = crop_flip(images, masks, crop, torch.Generator().manual_seed(7))
    assert out_images.shape == (n, 3, 6, 8) and out_masks.shape == (n, 6, 8)
    inside = out_images[:, 2] != 0
    # The whole image is in the window, every pixel once; the rest is image 0 and mask 255.
    assert inside.flatten(1).sum(dim=1).tolist() == [h * w] * n
    assert bool((out_images.permute(1, 0, 2, 3)[:, ~inside] == 0).all())
    assert bool((out_masks[~inside] == 255).all())
    assert bool((out_masks[inside] != 255).all())
    rows, cols = out_images[:, 0].long() - 1, out_images[:, 1].long() - 1
    assert torch.equal(out_masks[inside], ((rows * 7 + cols) % 19)[inside].to(torch.uint8))
    # The image sits at random places in the window: several offsets occur.
    corners = {tuple(torch.nonzero(m)[0].tolist()) for m in inside}
    assert len(corners) > 3
    # Along one axis only: the window covers the image's rows and lies inside its columns.
    out_images, out_masks = crop_flip(images, masks, (6, 3), torch.Generator().manual_seed(8))
    assert out_images.shape == (n, 3, 6, 3)
    assert ((out_masks == 255).flatten(1).sum(dim=1) == 2 * 3).all()


def test_bad_inputs():
    images, masks = coordinate_batch(2, 4, 4)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="masks"):
        crop_flip(images, masks[0], 2, gen)
    with pytest.raises(ValueError, match="differ"):
        crop_flip(images, masks[:, :3], 2, gen)
    with pytest.raises(ValueError, match="integer dtype"):
        crop_flip(images, masks.float(), 2, gen)
    with pytest.raises(ValueError, match="positive"):
        crop_flip(images, masks, (0, 2), gen)
