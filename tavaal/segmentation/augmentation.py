"""Training-time augmentation of segmentation batches: images and masks together, on the device.

`crop_flip` draws, per sample, a crop window of a fixed size and a horizontal flip, and applies
the same window and flip to the image and to its mask (VAAL §4.2 and TA-VAAL §4.4: random
horizontal flips; crops of 688x688 in VAAL, supp. Table 2, and 412x412 in TA-VAAL, supp.
Table 1). Pixels are only moved, never interpolated, so a mask keeps its label values. Where an
image is smaller than the crop, the window extends beyond it: those pixels are `image_fill` (0)
in the image and `ignore_index` (255) in the mask, so the loss and the metrics skip them.

Images are (N, C, H, W), uint8 or float; masks (N, H, W) of an integer dtype that holds 255
(uint8, int16, int32, int64). A `torch.Generator` on the batch's device drives the draws, so
the same generator state gives the same bytes; it advances by the same amount whatever the
sizes and whether flips are enabled.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tavaal.segmentation.metrics import IGNORE_INDEX


def crop_windows(
    n: int, size: tuple[int, int], crop: tuple[int, int], generator: torch.Generator
) -> Tensor:
    """int64 (n, 2) rows (top, left) of the crop windows, in image coordinates.

    Along an axis where the image (side s) is at least the crop (side c), the window lies inside
    the image: its start is uniform in [0, s - c]. Where the image is smaller, the image lies
    inside the window: the start is uniform in [s - c, 0] (negative: padding before the image).
    """
    device = generator.device
    draws = torch.rand((n, 2), generator=generator, device=device)
    starts = []
    for axis in range(2):
        s, c = size[axis], crop[axis]
        span = abs(s - c)
        offset = (draws[:, axis] * (span + 1)).long().clamp(max=span)
        starts.append(offset if s >= c else -offset)
    return torch.stack(starts, dim=1)


def crop_flip(
    images: Tensor,
    masks: Tensor,
    crop: int | tuple[int, int],
    generator: torch.Generator,
    hflip: bool = True,
    ignore_index: int = IGNORE_INDEX,
    image_fill: float = 0,
) -> tuple[Tensor, Tensor]:
    """Random `crop` (height, width) windows and horizontal flips of an (N, C, H, W) image batch
    and its (N, H, W) masks, the same window and flip for an image and its mask.

    Draws: the windows (`crop_windows`), then one coin per sample for the flip (drawn even
    when `hflip` is off). Returns new tensors of the inputs' dtypes and device:
    (N, C, crop_h, crop_w) and (N, crop_h, crop_w).
    """
    if images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0]:
        raise ValueError(
            f"expected images (N, C, H, W) and masks (N, H, W), got {tuple(images.shape)} and "
            f"{tuple(masks.shape)}"
        )
    if images.shape[2:] != masks.shape[1:]:
        raise ValueError(
            f"images of size {tuple(images.shape[2:])} and masks of size "
            f"{tuple(masks.shape[1:])} differ"
        )
    if masks.is_floating_point() or masks.dtype in (torch.bool, torch.int8):
        raise ValueError(
            f"masks must be an integer dtype that holds {ignore_index}, got {masks.dtype}"
        )
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    if min(crop_h, crop_w) < 1:
        raise ValueError(f"crop size must be positive, got {crop}")
    n, _, h, w = images.shape
    device = images.device
    windows = crop_windows(n, (h, w), (crop_h, crop_w), generator).to(device)
    flips = torch.rand(n, generator=generator, device=generator.device).to(device) < 0.5
    if not hflip:
        flips = torch.zeros_like(flips)

    rows = windows[:, :1] + torch.arange(crop_h, device=device)  # (N, crop_h)
    cols = windows[:, 1:] + torch.arange(crop_w, device=device)  # (N, crop_w)
    # Flip after the crop: the window's columns read right to left.
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    sample = torch.arange(n, device=device)[:, None, None]
    r = rows.clamp(0, h - 1)[:, :, None]
    c = cols.clamp(0, w - 1)[:, None, :]
    out_masks = masks[sample, r, c]  # (N, crop_h, crop_w)
    out_images = images.permute(0, 2, 3, 1)[sample, r, c].permute(0, 3, 1, 2)  # (N, C, ., .)
    if h < crop_h or w < crop_w:  # known from the shapes: no device sync
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        out_masks = out_masks.masked_fill(~inside, ignore_index)
        out_images = out_images.masked_fill(~inside[:, None], image_fill)
    return out_images.contiguous(), out_masks
