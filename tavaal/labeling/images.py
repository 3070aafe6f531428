"""Fitting a batch's images (read by `tavaal.data.image_reader.read_rgb`, as the model reads
them) into the page's thumbnails and the contact sheet's cells."""

from __future__ import annotations

from PIL import Image

# Letterbox bars around an image that is not square are this light grey, so they stay apart
# from the image's own (possibly white, once flattened) background.
BACKGROUND = (238, 238, 238)


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
