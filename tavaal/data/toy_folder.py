"""A generated folder of images for trying the human oracle offline (`tavaal toy-folder DIR`).

Three classes of shapes (circle, square, triangle) in random colours, sizes and positions on
noisy backgrounds, written as JPEG and PNG files of different sizes in nested folders whose
names say nothing about the class, as a practitioner's folder would be. The true labels are
written beside the folder, never inside it: ``truth.csv`` (every pool image; what a script
playing the human reads, or a simulated oracle's ``labels``) and ``test_labels.csv`` (the test
images). Everything is drawn from `seed`, so the same call writes the same files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOY_CLASSES = ("circle", "square", "triangle")
# Subfolders the images are spread over (by sample, not by class).
_BATCHES = ("batch_a", "batch_b/day1", "batch_b/day2")


@dataclass(frozen=True)
class ToyFolder:
    images: Path  # the image folder (image_folders.<name>.path)
    truth: Path  # path,label of every pool image
    test_labels: Path  # path,label of the test images


def _draw_image(rng: np.random.Generator, label: int):
    from PIL import Image, ImageDraw

    width, height = (int(v) for v in rng.integers(40, 97, size=2))
    background = rng.integers(0, 90, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background + rng.integers(0, 40, size=3, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    side = int(min(width, height) * rng.uniform(0.5, 0.8))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    colour = tuple(int(c) for c in rng.integers(130, 256, size=3))
    box = (left, top, left + side - 1, top + side - 1)
    if TOY_CLASSES[label] == "circle":
        draw.ellipse(box, fill=colour)
    elif TOY_CLASSES[label] == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon(
            [(left + side // 2, top), (left, top + side - 1), (left + side - 1, top + side - 1)],
            fill=colour,
        )
    return image


def write_toy_folder(out: Path, pool_per_class: int = 40, test_per_class: int = 20, seed: int = 0):
    """Write ``out/images/`` (nested, JPEG and PNG), ``out/truth.csv``, ``out/test_labels.csv``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    counts = (pool_per_class + test_per_class) * len(TOY_CLASSES)
    labels = np.repeat(np.arange(len(TOY_CLASSES)), pool_per_class + test_per_class)
    labels = labels[rng.permutation(counts)]
    is_test = np.zeros(counts, dtype=bool)
    for label in range(len(TOY_CLASSES)):
        members = np.flatnonzero(labels == label)
        is_test[rng.choice(members, size=test_per_class, replace=False)] = True
    rows: dict[bool, list[tuple[str, str]]] = {False: [], True: []}
    for number, label in enumerate(labels):
        folder = _BATCHES[number % len(_BATCHES)]
        suffix = ".jpg" if rng.random() < 0.5 else ".png"
        relative = f"{folder}/img_{number:04d}{suffix}"
        path = out / "images" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image = _draw_image(rng, int(label))
        if suffix == ".jpg":
            image.save(path, quality=92)
        else:
            image.save(path)
        rows[bool(is_test[number])].append((relative, TOY_CLASSES[label]))
    folder = ToyFolder(out / "images", out / "truth.csv", out / "test_labels.csv")
    for path, part in ((folder.truth, rows[False]), (folder.test_labels, rows[True])):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows(sorted(part))
    return folder


def write_class_folder_tree(
    out: Path,
    pool_per_class: int = 8,
    test_per_class: int = 4,
    seed: int = 0,
    sides: tuple[int, int] = (240, 330),
    classes: tuple[str, ...] = TOY_CLASSES,
) -> Path:
    """Write a labeled tree of ImageNet's shape, ``out/train/<class>/*.JPEG`` and
    ``out/val/<class>/*.JPEG``: the toy shapes as JPEGs of `sides` (width and height drawn in
    that range, so the 224-pixel path resizes and crops them); returns `out`."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", pool_per_class), ("val", test_per_class)):
        for label, name in enumerate(classes):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(per_class):
                image = _draw_image(rng, label % len(TOY_CLASSES))
                width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
                image = image.resize((width, height))
                image.save(folder / f"{name}_{split}_{number:04d}.JPEG", format="JPEG", quality=90)
    return out
