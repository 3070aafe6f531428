"""A contact sheet: one PNG showing a labeling batch's images as a captioned grid.

Each thumbnail is captioned with its sample id and its 1-based row in to_label.csv, so a person
labeling from the sheet (or checking a labels file against it) can find each row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from tavaal.atomic import atomic_write
from tavaal.data.image_reader import read_rgb
from tavaal.labeling.images import letterboxed

GAP = 4  # pixels around and between cells
CAPTION_HEIGHT = 14  # below each thumbnail
TITLE_HEIGHT = 20  # above the grid, only when there is a title
_PAGE = (255, 255, 255)
_TEXT = (20, 20, 20)


def sheet_size(count: int, *, thumb: int, columns: int, titled: bool) -> tuple[int, int]:
    """(width, height) of the sheet of `count` images."""
    used_columns = max(1, min(columns, count))
    rows = math.ceil(count / used_columns)
    width = GAP + used_columns * (thumb + GAP)
    height = (TITLE_HEIGHT if titled else 0) + GAP + rows * (thumb + CAPTION_HEIGHT + GAP)
    return width, height


def cell_origin(index: int, *, thumb: int, columns: int, titled: bool) -> tuple[int, int]:
    """Top-left pixel of the thumbnail of the `index`-th image (0-based)."""
    row, column = divmod(index, columns)
    x = GAP + column * (thumb + GAP)
    y = (TITLE_HEIGHT if titled else 0) + GAP + row * (thumb + CAPTION_HEIGHT + GAP)
    return x, y


def write_contact_sheet(
    paths: Sequence[Path | str],
    sample_ids: Sequence[int],
    out: Path,
    *,
    title: str = "",
    thumb: int = 112,
    columns: int = 8,
) -> None:
    """Write the images at `paths` (in to_label.csv order) as a PNG grid to `out`, atomically.

    Raises DatasetError naming the first image that cannot be read.
    """
    if len(paths) != len(sample_ids):
        raise ValueError(f"{len(paths)} paths but {len(sample_ids)} sample ids")
    if thumb < 1 or columns < 1:
        raise ValueError(f"thumb ({thumb}) and columns ({columns}) must be positive")
    columns = max(1, min(columns, len(paths)))
    titled = bool(title)
    sheet = Image.new(
        "RGB", sheet_size(len(paths), thumb=thumb, columns=columns, titled=titled), _PAGE
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if titled:
        draw.text((GAP, GAP), title, fill=_TEXT, font=font)
    for index, (path, sample_id) in enumerate(zip(paths, sample_ids, strict=True)):
        x, y = cell_origin(index, thumb=thumb, columns=columns, titled=titled)
        sheet.paste(letterboxed(read_rgb(path), thumb), (x, y))
        draw.text((x, y + thumb + 1), f"#{index + 1}  id {sample_id}", fill=_TEXT, font=font)
    with atomic_write(out) as tmp:
        sheet.save(tmp, format="PNG")
