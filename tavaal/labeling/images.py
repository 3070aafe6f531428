"""Reading the images of a labeling batch with PIL: any size, RGB, L, RGBA or palette."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tavaal.errors import DatasetError

# Transparent areas and letterbox bars are shown on this light grey.
BACKGROUND = (238, 238, 238)


def open_rgb(path: Path | str) -> Image.Image:
    """The image at `path` as RGB, transparency flattened onto BACKGROUND."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None
    if image.mode == "P":
        # A palette may carry transparency; RGBA keeps it for the flattening below.
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        flat = Image.new("RGB", image.size, BACKGROUND)
        flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return flat
    return image.convert("RGB")


def fitted(image: Image.Image, size: int) -> Image.Image:
    """`image` scaled (aspect kept) to fit a size x size square; small images are enlarged too,
    so tiny dataset images stay visible."""
    scale = size / max(image.size)
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    # Enlarging pixel art (28x28 digits) blurs with smooth filters; NEAREST keeps it sharp.
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return image.resize((width, height), resample)


def letterboxed(image: Image.Image, size: int) -> Image.Image:
    """`image` fitted and centred on a size x size BACKGROUND square."""
    inner = fitted(image, size)
    square = Image.new("RGB", (size, size), BACKGROUND)
    square.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
    return square
