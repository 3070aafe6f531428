"""RandAugment (Cubuk et al., NeurIPS 2020) on a uint8 batch, drawn from a seeded generator.

Part of the strong training recipe (`train.randaugment_ops`), after Munjal et al. (CVPR 2022,
"Towards Robust and Reproducible Active Learning"), who regularise every method's task learner
with RandAugment and stochastic weight averaging (`tavaal.swa`).

Each image gets `ops` operations in a row, each chosen uniformly from the 14 of `OPS` (as
torchvision's `RandAugment` lists them) and applied at the one global magnitude `magnitude` of
`MAGNITUDE_BINS - 1`; the signed ones (geometry, brightness, colour, contrast, sharpness) take a
random sign per image. Geometric operations use nearest-neighbour sampling and fill with 0.

Unlike torchvision's transform, which augments one image per call, the draws here are made for
the whole (global) batch at once from the training's own generator, and each operation runs
once on the rows that drew it: one seed gives one batch on any device, and data-parallel ranks
draw the global batch's choices and keep their share (`tavaal.augmentation`).
"""

from __future__ import annotations

import math

import torch

# torchvision's RandAugment: magnitudes are fractions m / 30 of each operation's range.
MAGNITUDE_BINS = 31
OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
SIGNED = frozenset(
    ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
    + ("brightness", "color", "contrast", "sharpness")
)
# Range at the top magnitude (RandAugment §3; torchvision's table): shear factor, translation
# as a fraction of the side (150 of 331 px), rotation in degrees, enhancement factor offset,
# bits removed by posterize.
MAX_SHEAR = 0.3
MAX_TRANSLATE = 150 / 331
MAX_ROTATE = 30.0
MAX_ENHANCE = 0.9
MAX_POSTERIZE_BITS = 4


def _apply(op: str, images: torch.Tensor, strength: float) -> torch.Tensor:
    """One operation on uint8 (n, C, H, W) images; `strength` in [-1, 1] is the signed
    fraction of the operation's range (unsigned operations get |strength|)."""
    import torchvision.transforms.v2.functional as TF

    _, _, h, w = images.shape
    if op == "identity":
        return images
    if op in ("shear_x", "shear_y"):
        # A shear factor s is an angle of atan(s); sheared about the top-left corner.
        angle = math.degrees(math.atan(MAX_SHEAR * strength))
        shear = [angle, 0.0] if op == "shear_x" else [0.0, angle]
        return TF.affine(images, 0.0, [0, 0], 1.0, shear, fill=[0.0], center=[0, 0])
    if op == "translate_x":
        return TF.affine(images, 0.0, [round(MAX_TRANSLATE * w * strength), 0], 1.0, [0.0, 0.0])
    if op == "translate_y":
        return TF.affine(images, 0.0, [0, round(MAX_TRANSLATE * h * strength)], 1.0, [0.0, 0.0])
    if op == "rotate":
        return TF.rotate(images, MAX_ROTATE * strength, fill=[0.0])
    factor = 1.0 + MAX_ENHANCE * strength
    if op == "brightness":
        return TF.adjust_brightness(images, factor)
    if op == "color":
        # Saturation of a one-channel image is the image itself.
        return images if images.shape[1] == 1 else TF.adjust_saturation(images, factor)
    if op == "contrast":
        return TF.adjust_contrast(images, factor)
    if op == "sharpness":
        return TF.adjust_sharpness(images, factor)
    if op == "posterize":
        return TF.posterize(images, 8 - round(MAX_POSTERIZE_BITS * abs(strength)))
    if op == "solarize":
        return TF.solarize(images, 255.0 * (1.0 - abs(strength)))
    if op == "autocontrast":
        return TF.autocontrast(images)
    if op == "equalize":
        return TF.equalize(images)
    raise ValueError(f"unknown RandAugment operation {op!r}")


def randaugment_images(
    batch: torch.Tensor,
    generator: torch.Generator,
    ops: int,
    magnitude: int,
    share: tuple[int, int] | None = None,
) -> torch.Tensor:
    """`ops` random operations at `magnitude` (0..30) per image of a uint8 (N, H, W, C) batch.

    Draws (op index and sign for each of the `ops` slots, for every row of the global batch)
    come from `generator` in one call whatever the images, so the stream advances by the same
    amount every batch. `share` = (start, total): the batch is rows start.. of a global batch of
    `total` (data-parallel training).
    """
    if not 0 <= magnitude < MAGNITUDE_BINS:
        raise ValueError(f"RandAugment magnitude {magnitude} is outside 0..{MAGNITUDE_BINS - 1}")
    n = len(batch)
    start, total = share if share is not None else (0, n)
    device = batch.device
    choice = torch.randint(0, len(OPS), (ops, total), generator=generator, device=device)
    negative = torch.rand((ops, total), generator=generator, device=device) < 0.5
    choice, negative = choice[:, start : start + n], negative[:, start : start + n]
    images = batch.permute(0, 3, 1, 2).contiguous()
    fraction = magnitude / (MAGNITUDE_BINS - 1)
    for slot in range(ops):
        out = images.clone()
        for index, op in enumerate(OPS):
            picked = choice[slot] == index
            # Signed operations run once per sign; the others ignore theirs.
            for sign in (False, True) if op in SIGNED else (None,):
                rows = picked if sign is None else picked & (negative[slot] == sign)
                if bool(rows.any()):
                    out[rows] = _apply(op, images[rows], -fraction if sign else fraction)
        images = out
    return images.permute(0, 2, 3, 1).contiguous()
