"""The one way images are read, for the model, the labeling page and the contact sheet alike.

`read_rgb` turns a file into the RGB picture a person sees: rotated by its EXIF orientation
(phone photos store the sensor's pixels plus a tag saying how to turn them) and with
transparency flattened onto BACKGROUND (white), so the page shows exactly what the model reads.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from tavaal.errors import DatasetError

# Transparent pixels become this colour everywhere (white: how most viewers show a
# transparent image on a page).
BACKGROUND = (255, 255, 255)


def read_rgb(path: Path | str) -> Image.Image:
    """The image at `path` as an RGB PIL image: EXIF orientation applied, transparency (an alpha
    channel or a palette's transparent entry) composited onto BACKGROUND.

    Raises DatasetError naming `path` when it cannot be read as an image.
    """
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        # PIL raises SyntaxError for some malformed headers and ValueError for bad EXIF.
        raise DatasetError(f"{path}: not a readable image ({exc})") from None
    if upright.mode == "P" or "transparency" in upright.info:
        # A palette or a tRNS chunk may carry transparency; RGBA keeps it for the flattening.
        upright = upright.convert("RGBA")
    if upright.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = upright.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return upright.convert("RGB")
