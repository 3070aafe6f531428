"""Training-time image augmentation, batched on the device.

Both augmentations take a uint8 (N, H, W, C) batch and a `torch.Generator` on the batch's
device, and return a uint8 batch of the same shape: the rest of the pipeline (normalisation,
the model's input size) never sees the difference. The same generator state gives the same
batch. Evaluation always uses the stored images unchanged.

- `augment_images` ("pad_crop"): CIFAR-style random crop of the zero-padded image plus a
  horizontal flip (TA-VAAL §4.2).
- `resized_crop_images` ("resized_crop"): ImageNet-style random-resized crop. A box of random
  area fraction and aspect ratio is resized back to the stored size, plus the flip. Images
  meant for it are stored at the network's input size (an image folder at 224 px: shorter
  side resized to 224, then the centre crop), so the crop is resized back to 224 and
  evaluation sees the whole stored image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Candidate boxes drawn per sample before falling back to the centre crop.
CROP_ATTEMPTS = 10


def _rows(batch: torch.Tensor, share: tuple[int, int] | None) -> tuple[int, int]:
    """(first row, rows drawn for): the batch's place in the global batch whose draws it takes
    (`share`, data-parallel training: `tavaal.distributed`), else the batch itself."""
    return share if share is not None else (0, len(batch))


def augment_images(
    batch: torch.Tensor,
    generator: torch.Generator,
    padding: int = 4,
    hflip: bool = True,
    share: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random crop of the zero-padded image and horizontal flip of a uint8 (N, H, W, C) batch.

    Runs on the batch's device. Zero padding happens on raw pixels, as in the papers' pipelines
    (TA-VAAL §4.2: 32×32 crops of 36×36 zero-padded images). `share` = (start, total): the
    batch is rows start.. of a global batch of `total`; the draws are the global batch's.
    """
    n, h, w, _ = batch.shape
    start, total = _rows(batch, share)
    padded = F.pad(batch, (0, 0, padding, padding, padding, padding))
    device = batch.device
    draws = torch.randint(0, 2 * padding + 1, (2, total), generator=generator, device=device)
    draws = draws[:, start : start + n]
    flips = torch.rand(total, generator=generator, device=device)[start : start + n] < 0.5
    if not hflip:
        flips = torch.zeros_like(flips)
    rows = draws[0][:, None] + torch.arange(h, device=device)[None, :]
    cols = draws[1][:, None] + torch.arange(w, device=device)[None, :]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    sample = torch.arange(n, device=device)[:, None, None]
    return padded[sample, rows[:, :, None], cols[:, None, :]]


def resized_crop_boxes(
    n: int,
    h: int,
    w: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 4 / 3),
) -> torch.Tensor:
    """Random crop boxes for `n` images of h × w pixels: int64 (n, 4) rows (top, left, height,
    width), on the generator's device.

    Per sample, CROP_ATTEMPTS candidates are drawn at once: an area fraction uniform in `scale`
    and an aspect ratio (width / height) log-uniform in `ratio`, their sides rounded to whole
    pixels. The first candidate that fits in the image is placed uniformly at random; when none
    fits, the box is the centre crop of the largest box whose aspect ratio lies in `ratio` (the
    whole image when its own aspect ratio does), whatever its area. The generator advances by
    the same amount whatever is drawn.
    """
    device = generator.device
    area = h * w
    draws = torch.rand((n, CROP_ATTEMPTS, 2), generator=generator, device=device)
    place = torch.rand((n, 2), generator=generator, device=device)
    target = area * (scale[0] + (scale[1] - scale[0]) * draws[..., 0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[..., 1])
    widths = torch.round(torch.sqrt(target * aspect)).long()
    heights = torch.round(torch.sqrt(target / aspect)).long()
    fits = (widths >= 1) & (widths <= w) & (heights >= 1) & (heights <= h)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first True (0 when none)
    width = widths.gather(1, first).squeeze(1)
    height = heights.gather(1, first).squeeze(1)
    top = torch.minimum((place[:, 0] * (h - height + 1)).long(), h - height)
    left = torch.minimum((place[:, 1] * (w - width + 1)).long(), w - width)

    # Fallback: the image's own aspect ratio, clamped into `ratio`, at the largest size.
    if w / h < ratio[0]:
        fallback_w, fallback_h = w, max(1, round(w / ratio[0]))
    elif w / h > ratio[1]:
        fallback_w, fallback_h = max(1, round(h * ratio[1])), h
    else:
        fallback_w, fallback_h = w, h
    fallback = torch.tensor(
        [(h - fallback_h) // 2, (w - fallback_w) // 2, fallback_h, fallback_w], device=device
    )
    boxes = torch.stack([top, left, height, width], dim=1)
    return torch.where(fits.any(dim=1, keepdim=True), boxes, fallback)


def crop_and_resize(batch: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Each image's box (top, left, height, width rows of `boxes`) resized to the image's size,
    mirrored left-right where `flips` is True: uint8 (N, H, W, C) in, uint8 out.

    One bilinear `grid_sample` (align_corners=False) over the whole batch, from per-sample
    affine grids with the flip folded in. Sample points are clamped to the box's pixel centres,
    so the result is that of cropping first and then resizing: no pixel outside the box leaks
    in at its edges.
    """
    n, h, w, c = batch.shape
    device = batch.device
    boxes = boxes.to(device=device, dtype=torch.float32)
    top, left, height, width = boxes.unbind(1)
    sign = torch.where(flips.to(device), -1.0, 1.0)
    # Normalised coordinates (align_corners=False): -1 and 1 are the image's outer edges, so
    # the box spans [-1 + 2 left / w, -1 + 2 (left + width) / w] horizontally.
    theta = torch.zeros((n, 2, 3), device=device)
    theta[:, 0, 0] = sign * width / w
    theta[:, 0, 2] = (2 * left + width) / w - 1
    theta[:, 1, 1] = height / h
    theta[:, 1, 2] = (2 * top + height) / h - 1
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    # Clamp to the centres of the box's first and last pixels, per sample.
    low = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], dim=1)[:, None, None]
    high = torch.stack([(2 * (left + width) - 1) / w - 1, (2 * (top + height) - 1) / h - 1], dim=1)[
        :, None, None
    ]
    grid = torch.minimum(torch.maximum(grid, low), high)
    images = batch.permute(0, 3, 1, 2).float()
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def resized_crop_images(
    batch: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 4 / 3),
    hflip: bool = True,
    share: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random-resized crop and horizontal flip of a uint8 (N, H, W, C) batch, on its device.

    Boxes as `resized_crop_boxes` draws them (area fraction in `scale`, aspect ratio in
    `ratio`), then one coin per sample for the flip (drawn even when `hflip` is off, so the
    stream does not depend on it), then `crop_and_resize` back to (H, W). `share`: as in
    `augment_images`.
    """
    n, h, w, _ = batch.shape
    start, total = _rows(batch, share)
    boxes = resized_crop_boxes(total, h, w, generator, scale, ratio)[start : start + n]
    flips = torch.rand(total, generator=generator, device=generator.device)[start : start + n]
    flips = flips < 0.5
    if not hflip:
        flips = torch.zeros_like(flips)
    return crop_and_resize(batch, boxes, flips)
