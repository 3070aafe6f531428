"""Segmentation datasets: Cityscapes, BDD100K and the offline ``seg_shapes``.

Each is prepared with ``task="segmentation"`` (`tavaal.data.registry`): uint8 RGB images
(N, H, W, 3) and uint8 masks (N, H, W) of class indices 0..K-1, 255 for pixels not scored.

**Raw files.** Neither Cityscapes nor BDD100K can be downloaded here (both need an account on
their sites), so their files are read in place from a folder the user points at (``tavaal prepare
cityscapes --source DIR``, the config's ``raw_sources``: raw sources ``cityscapes`` and
``bdd100k``), which is only read, never written; or from ``data_dir/raw/<source>/``:

===========  =====================================================================================
source       files under ``DIR/`` (or ``DIR/cityscapes/``, ``DIR/bdd100k/``)
===========  =====================================================================================
cityscapes   ``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png`` (``leftImg8bit_trainvaltest
             .zip``) and ``gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png``
             (``gtFine_trainvaltest.zip``): 2,975 train and 500 val images, 2048x1024
bdd100k      ``images/10k/{train,val}/<name>.jpg`` with ``labels/sem_seg/masks/{train,val}/<name>
             .png`` (the current "10K Images" and "Semantic Segmentation" downloads), or the older
             release's ``seg/images/{train,val}/<name>.jpg`` with ``seg/labels/{train,val}/<name>
             _train_id.png``: 7,000 train and 1,000 val images, 1280x720
===========  =====================================================================================

Sources of the layouts: the Cityscapes download packages as torchvision's ``Cityscapes`` reads
them (``leftImg8bit/<split>/<city>/``, ``gtFine/<split>/<city>/*_gtFine_labelIds.png``); for
BDD100K the official documentation (doc.bdd100k.com, "Label Format": 19 semantic classes 0-18,
255 "unknown") and the 10K package listing (``images/10k/<split>``, ``labels/sem_seg/masks/
<split>``, one-channel 8-bit PNGs, 255 = ignore); the older ``seg/`` layout with
``*_train_id.png`` masks is the one mmsegmentation's ``BDD100KDataset`` (``seg_map_suffix=
'_train_id.png'``) and DRN-style loaders read. Other files in those folders (``_color.png``,
``_instanceIds.png``, ``_polygons.json``, ...) are not read. Every image must have its mask and
every mask its image; a missing partner is one error naming the files.

**Labels.** Cityscapes masks hold label ids 0-33; they are mapped to the 19 train ids of the
benchmark (road 0 ... bicycle 18) with a lookup table, every other id (unlabeled, ego vehicle,
parking, guard rail, caravan, trailer, ...) to 255. BDD100K's masks already hold those 19 train
ids and 255; any other value is an error naming the file.

**Split** (VAAL supp. Table 2). Cityscapes: "2675 + 300" train + val and 500 test. The pool is the
official train split less 300 images held out with a fixed seed (`fixed_seed`), 2,675 images:
those 300 are VAAL's validation images, which no experiment here uses, so they are left out; the
test split is the official val split, 500 (the official test labels are not public). BDD100K: the
pool is the official train split, 7,000, and the test split the official val split, 1,000; VAAL's
table lists "7000 + 1000" and a test split of 2,000, which is BDD100K's test split whose labels
are withheld, so its val split stands in for it. A tree with other counts (a partial
extraction) is refused with one error naming the expected and found counts; the tests replace
`SETS` (counts and sizes), which is the only way to change them.

**Working resolution.** Every image is stored with its shorter side 688 (VAAL's 688x688 crops;
TA-VAAL's 412x412 crops fit as well): Cityscapes at 1376x688, BDD100K at 1223x688 (1280x720
scaled by 688/720, the width rounded). Images are resized with PIL's bicubic filter, which
averages over the source pixels when it shrinks; masks with nearest neighbour, so no new values
appear. Both are written straight into memory-mapped ``.npy`` files in the preparation's staging
folder (`BuildContext.staged_array`), never held in memory, with a progress line every
`PROGRESS_EVERY` images; a killed preparation leaves no dataset. On disk: Cityscapes 7.60 GB of
pool images + 2.53 GB of pool masks + 1.42 GB + 0.47 GB for the test split, 12.0 GB in all;
BDD100K 17.67 + 5.89 + 2.52 + 0.84 = 26.9 GB.

**seg_shapes.** A generated dataset for tests and offline examples: 600 train and 200 test
images of 64x64 with circles, squares and triangles (classes 1-3; background 0) of varying sizes
and rotations on striped, noisy backgrounds. Shapes and backgrounds draw their colours from the
same distribution and carry textures of the same kind, so neither colour nor texture alone tells
a class (only a shape's outline does); each shape differs clearly from its image's background.
The masks are exact (a pixel belongs to the shape its centre lies in; later shapes cover earlier
ones). Generated from fixed seeds in well under a second; 13 MB on disk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tavaal.data.registry import (
    IGNORE_INDEX,
    BuildContext,
    Provenance,
    Splits,
    fixed_seed,
    register_dataset,
)
from tavaal.errors import DatasetError

SHORTER_SIDE = 688
PROGRESS_EVERY = 250
# Partners named in the error about a missing mask or image (the count is given too).
_NAMED = 5

# The 19 classes of the Cityscapes benchmark (train ids 0..18); BDD100K uses the same ones.
CLASSES_19 = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
# Cityscapes label id -> train id for the 19 evaluated classes, from the Cityscapes label table
# (cityscapesScripts' helpers/labels.py, reproduced as torchvision.datasets.Cityscapes.classes;
# the tests compare the two). Ids 0..33 not listed here are not evaluated (train id 255); the
# label-id PNGs hold no other values (license plate, id -1, is not drawn into them).
CITYSCAPES_TRAIN_IDS = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
CITYSCAPES_MAX_ID = 33


def _cityscapes_table() -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label_id] = train_id
    return table


CITYSCAPES_LOOKUP = _cityscapes_table()


def working_size(raw_size: tuple[int, int], shorter: int = SHORTER_SIDE) -> tuple[int, int]:
    """(width, height) of an image of `raw_size` (width, height) scaled so that its shorter side
    is `shorter` (the other side rounded to the nearest pixel)."""
    width, height = raw_size
    scale = shorter / min(width, height)
    return (shorter, round(height * scale)) if width <= height else (round(width * scale), shorter)


@dataclass(frozen=True)
class SegSet:
    """A raw segmentation source: its official split sizes, image size and working size."""

    title: str  # for messages
    n_train: int  # images of the official train split
    n_val: int  # images of the official val split (our test split)
    holdout: int  # train images left out of the pool (VAAL's validation images)
    raw_size: tuple[int, int]  # (width, height) of every image and mask
    size: tuple[int, int]  # (width, height) stored
    paper: str

    @property
    def n_pool(self) -> int:
        return self.n_train - self.holdout

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.size[1], self.size[0])


SETS: dict[str, SegSet] = {
    "cityscapes": SegSet(
        "Cityscapes", 2975, 500, 300, (2048, 1024), working_size((2048, 1024)), "VAAL supp. Table 2"
    ),
    "bdd100k": SegSet(
        "BDD100K", 7000, 1000, 0, (1280, 720), working_size((1280, 720)), "VAAL supp. Table 2"
    ),
}


@dataclass(frozen=True)
class _Layout:
    """Where one release of a source keeps a split's images and masks."""

    images: str  # folder of a split's images, {split} in it
    masks: str
    image_suffix: str  # a file name's end that is not part of the sample's name
    mask_suffix: str
    nested: bool  # images in one sub-folder per city

    def image_path(self, root: Path, split: str, key: tuple[str, ...]) -> Path:
        folder = root / self.images.format(split=split)
        return folder.joinpath(*key[:-1], key[-1] + self.image_suffix)

    def mask_path(self, root: Path, split: str, key: tuple[str, ...]) -> Path:
        folder = root / self.masks.format(split=split)
        return folder.joinpath(*key[:-1], key[-1] + self.mask_suffix)

    @property
    def pattern(self) -> str:
        return (
            f"{self.images.format(split='{train,val}')}/{'<city>/' if self.nested else ''}"
            f"<name>{self.image_suffix} + {self.masks.format(split='{train,val}')}/"
            f"{'<city>/' if self.nested else ''}<name>{self.mask_suffix}"
        )


CITYSCAPES_LAYOUT = _Layout(
    "leftImg8bit/{split}", "gtFine/{split}", "_leftImg8bit.png", "_gtFine_labelIds.png", True
)
BDD_LAYOUTS = (
    _Layout("images/10k/{split}", "labels/sem_seg/masks/{split}", ".jpg", ".png", False),
    _Layout("seg/images/{split}", "seg/labels/{split}", ".jpg", "_train_id.png", False),
)
_HINTS = {
    "cityscapes": (
        "Cityscapes needs an account: download leftImg8bit_trainvaltest.zip and "
        "gtFine_trainvaltest.zip from cityscapes-dataset.com, extract both into one folder DIR"
    ),
    "bdd100k": (
        "BDD100K needs an account: download the 10K Images and the Semantic Segmentation labels "
        "from bdd100k.com and extract both into one folder DIR"
    ),
}


def _source_root(
    ctx: BuildContext, source: str, layouts: tuple[_Layout, ...]
) -> tuple[Path, _Layout]:
    """(root, layout) of `source`: in place from ``raw_sources``, else under the raw root."""
    spec = SETS[source]
    given = ctx.given_folder(source)
    if given is not None:
        roots = [given, given / source]
    else:
        given = ctx.raw_root.absolute() / source
        roots = [given]
    for root in roots:
        for layout in layouts:
            if (root / layout.images.format(split="train")).is_dir():
                return root, layout
    where = "DIR" if source in ctx.raw_sources else str(given)
    layouts_text = " or ".join(f"{where}/{layout.pattern}" for layout in layouts)
    how = (
        "a folder given in raw_sources or with --source is only read"
        if source in ctx.raw_sources
        else f"then run `tavaal prepare {ctx.name} --source DIR`"
    )
    raise DatasetError(
        f"dataset {ctx.name!r}: no {spec.title} images found: expected {layouts_text}; searched "
        f"{', '.join(str(root) for root in roots)}. {_HINTS[source]}; {how} (nothing is "
        f"downloaded)"
    )


def _files(folder: Path, suffix: str, nested: bool) -> dict[tuple[str, ...], Path]:
    """The files ending in `suffix` in `folder` (in its sub-folders when `nested`), by
    (sub-folder, name without the suffix); hidden files are skipped."""
    if not folder.is_dir():
        return {}
    if nested:
        parents = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        parents = [folder]
    found = {}
    for parent in parents:
        for path in parent.iterdir():
            name = path.name
            if name.endswith(suffix) and not name.startswith(".") and path.is_file():
                stem = name[: -len(suffix)]
                found[(parent.name, stem) if nested else (stem,)] = path
    return found


def _pairs(name: str, root: Path, layout: _Layout, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) of every sample of `split`, sorted by (city,) name; a sample missing its
    image or mask raises one DatasetError naming them."""
    images = _files(root / layout.images.format(split=split), layout.image_suffix, layout.nested)
    masks = _files(root / layout.masks.format(split=split), layout.mask_suffix, layout.nested)
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    problems = []
    if lonely_images:
        named = ", ".join(
            f"{images[k]} (expected {layout.mask_path(root, split, k)})"
            for k in lonely_images[:_NAMED]
        )
        problems.append(f"{len(lonely_images)} image(s) without a mask: {named}")
    if lonely_masks:
        named = ", ".join(
            f"{masks[k]} (expected {layout.image_path(root, split, k)})"
            for k in lonely_masks[:_NAMED]
        )
        problems.append(f"{len(lonely_masks)} mask(s) without an image: {named}")
    if problems:
        raise DatasetError(
            f"dataset {name!r}: every image needs its mask and every mask its image; "
            f"{'; '.join(problems)}"
        )
    return [(images[key], masks[key]) for key in sorted(images)]


def _open_checked(path: Path, spec: SegSet, what: str):
    """The opened PIL image at `path`, checked to be `spec.raw_size`; the caller closes it."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: not a readable {what} ({exc})") from None
    if image.size != spec.raw_size:
        image.close()
        width, height = spec.raw_size
        raise DatasetError(
            f"{path}: {image.size[0]}x{image.size[1]} pixels; every {spec.title} {what} is "
            f"{width}x{height}"
        )
    return image


def _read_image(path: Path, spec: SegSet) -> np.ndarray:
    """uint8 (H, W, 3) at the working size (bicubic, averaging when it shrinks)."""
    from PIL import Image

    with _open_checked(path, spec, "image") as image:
        rgb = image.convert("RGB").resize(spec.size, Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _read_mask(path: Path, spec: SegSet, check: Callable[[Path, np.ndarray], None]) -> np.ndarray:
    """The values of a one-channel 8-bit mask, checked by `check` at full resolution (a bad
    value is found even where the shrinking does not sample it), then as uint8 (H, W) at the
    working size by nearest neighbour (only values of the file)."""
    from PIL import Image

    with _open_checked(path, spec, "mask") as image:
        if image.mode not in ("L", "P"):
            raise DatasetError(
                f"{path}: a {image.mode} image; a mask is a one-channel 8-bit PNG (mode L)"
            )
        full = np.asarray(image, dtype=np.uint8)
    check(path, full)
    small = Image.fromarray(full).resize(spec.size, Image.Resampling.NEAREST)
    return np.asarray(small, dtype=np.uint8)


def _check_cityscapes(path: Path, ids: np.ndarray) -> None:
    if int(ids.max(initial=0)) > CITYSCAPES_MAX_ID:
        raise DatasetError(
            f"{path}: holds the value {int(ids.max())}; a Cityscapes *_gtFine_labelIds.png "
            f"holds label ids 0..{CITYSCAPES_MAX_ID}"
        )


def _cityscapes_mask(path: Path, spec: SegSet) -> np.ndarray:
    return CITYSCAPES_LOOKUP[_read_mask(path, spec, _check_cityscapes)]


def _check_bdd(path: Path, mask: np.ndarray) -> None:
    counts = np.bincount(mask.ravel(), minlength=256)
    bad = [v for v in np.flatnonzero(counts) if len(CLASSES_19) <= v != IGNORE_INDEX]
    if bad:
        raise DatasetError(
            f"{path}: holds the value {int(bad[0])}; a BDD100K semantic mask holds the train ids "
            f"0..{len(CLASSES_19) - 1} and {IGNORE_INDEX} (ignore)"
        )


def _bdd_mask(path: Path, spec: SegSet) -> np.ndarray:
    return _read_mask(path, spec, _check_bdd)


def _decode(
    ctx: BuildContext,
    spec: SegSet,
    folder: Path,
    parts: dict[str, list[tuple[Path, Path]]],
    read_mask: Callable[[Path, SegSet], np.ndarray],
) -> dict[str, np.ndarray]:
    """Decode each part's images and masks into staged (memory-mapped) arrays, logging progress;
    returns x_<part> and y_<part> for each part."""
    width, height = spec.size
    total = sum(len(pairs) for pairs in parts.values())
    ctx.log(f"{ctx.name}: decoding {total} images and masks from {folder} at {width}x{height}")
    start, done = time.monotonic(), 0
    arrays = {}
    for part, pairs in parts.items():
        x = ctx.staged_array(f"x_{part}", (len(pairs), height, width, 3), np.uint8)
        y = ctx.staged_array(f"y_{part}", (len(pairs), height, width), np.uint8)
        for row, (image, mask) in enumerate(pairs):
            x[row] = _read_image(image, spec)
            y[row] = read_mask(mask, spec)
            done += 1
            if done % PROGRESS_EVERY == 0 or done == total:
                rate = done / max(time.monotonic() - start, 1e-9)
                ctx.log(f"{ctx.name}: {done}/{total} images decoded ({rate:.1f} images/s)")
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, y
    return arrays


def pool_positions(n_train: int, holdout: int, role: str) -> np.ndarray:
    """Sorted positions of the official train images kept in the pool: all but `holdout` drawn
    with the fixed seed of `role`."""
    rng = np.random.default_rng(fixed_seed(role))
    held = rng.choice(n_train, size=holdout, replace=False)
    return np.setdiff1d(np.arange(n_train), held)


def build_segmentation(
    ctx: BuildContext,
    source: str,
    layouts: tuple[_Layout, ...],
    read_mask: Callable[[Path, SegSet], np.ndarray],
) -> Splits:
    spec = SETS[source]
    root, layout = _source_root(ctx, source, layouts)
    train = _pairs(ctx.name, root, layout, "train")
    val = _pairs(ctx.name, root, layout, "val")
    if (len(train), len(val)) != (spec.n_train, spec.n_val):
        raise DatasetError(
            f"dataset {ctx.name!r}: {root} holds {len(train)} train and {len(val)} val "
            f"image/mask pairs ({layout.pattern}); the full {spec.title} has {spec.n_train} "
            f"train and {spec.n_val} val ({spec.paper}). A partial download or extraction? "
            f"Point --source / raw_sources at the complete folder"
        )
    pool = [train[i] for i in pool_positions(spec.n_train, spec.holdout, f"{source}/holdout")]
    arrays = _decode(ctx, spec, root, {"train": pool, "test": val}, read_mask)
    return Splits(
        **arrays,
        classes=CLASSES_19,
        # No md5 sums are known for the individual files.
        provenance=Provenance(folder=root, md5_verified=False),
        task="segmentation",
    )


@register_dataset(
    "cityscapes",
    raw_source="cityscapes",
    n_train=SETS["cityscapes"].n_pool,
    n_test=SETS["cityscapes"].n_val,
    input_shape=SETS["cityscapes"].input_shape,
    task="segmentation",
)
def build_cityscapes(ctx: BuildContext) -> Splits:
    """Cityscapes (gtFine), 19 classes: 2,675 pool / 500 test images at 1376x688."""
    return build_segmentation(ctx, "cityscapes", (CITYSCAPES_LAYOUT,), _cityscapes_mask)


@register_dataset(
    "bdd100k_seg",
    raw_source="bdd100k",
    n_train=SETS["bdd100k"].n_pool,
    n_test=SETS["bdd100k"].n_val,
    input_shape=SETS["bdd100k"].input_shape,
    task="segmentation",
)
def build_bdd100k_seg(ctx: BuildContext) -> Splits:
    """BDD100K semantic segmentation, 19 classes: 7,000 pool / 1,000 test images at 1223x688."""
    return build_segmentation(ctx, "bdd100k", BDD_LAYOUTS, _bdd_mask)


# --- seg_shapes ----------------------------------------------------------------------------

SHAPES_SIZE = 64
SHAPES_COUNTS = (600, 200)  # train, test
SHAPES_CLASSES = ("background", "circle", "square", "triangle")
_SHAPES_PER_IMAGE = (1, 3)  # at least, at most
_RADIUS = (5.0, 15.0)  # a shape's size: circle radius, square half-side / 0.85, ...
_MIN_COLOUR_DISTANCE = 120  # L1 distance of a shape's colour from its background's
_NOISE = 10.0  # std of the per-pixel noise


def _stripes(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A texture: the sum of two sinusoidal gratings of random direction, frequency, phase and
    amplitude (float, about -40..40)."""
    texture = np.zeros_like(xx)
    for _ in range(2):
        angle = rng.uniform(0, math.pi)
        frequency = rng.uniform(0.15, 0.9)  # radians per pixel
        amplitude = rng.uniform(5, 20)
        phase = rng.uniform(0, 2 * math.pi)
        along = math.cos(angle) * xx + math.sin(angle) * yy
        texture += amplitude * np.sin(frequency * along + phase)
    return texture


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(30, 225, size=3)


def _inside(cls: int, dx: np.ndarray, dy: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Pixels (offsets dx, dy of their centres from the shape's centre) inside shape `cls`."""
    if cls == 1:  # circle
        return dx * dx + dy * dy <= radius * radius
    if cls == 2:  # square, rotated by `angle`
        half = 0.85 * radius
        u = math.cos(angle) * dx + math.sin(angle) * dy
        v = -math.sin(angle) * dx + math.cos(angle) * dy
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # Equilateral triangle with circumradius 1.25 * radius: inside the three edges, each at
    # the inradius (half the circumradius) from the centre, their normals 120 degrees apart.
    circumradius = 1.25 * radius
    inside = np.ones(dx.shape, dtype=bool)
    for k in range(3):
        normal = angle + math.pi / 3 + 2 * math.pi * k / 3
        inside &= math.cos(normal) * dx + math.sin(normal) * dy <= circumradius / 2
    return inside


def _shapes_image(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray):
    """One image (uint8 H, W, 3) and its exact mask (uint8 H, W)."""
    size = xx.shape[0]
    background = _colour(rng)
    gains = rng.uniform(0.5, 1.5, size=3)
    image = background + _stripes(rng, xx, yy)[..., None] * gains
    mask = np.zeros(xx.shape, dtype=np.uint8)
    for _ in range(int(rng.integers(_SHAPES_PER_IMAGE[0], _SHAPES_PER_IMAGE[1] + 1))):
        cls = int(rng.integers(1, len(SHAPES_CLASSES)))
        radius = rng.uniform(*_RADIUS)
        cx, cy = rng.uniform(radius * 0.5, size - radius * 0.5, size=2)
        inside = _inside(cls, xx - cx, yy - cy, radius, rng.uniform(0, 2 * math.pi))
        colour = _colour(rng)
        while np.abs(colour - background).sum() < _MIN_COLOUR_DISTANCE:
            colour = _colour(rng)
        texture = _stripes(rng, xx[inside], yy[inside])[:, None] * rng.uniform(0.5, 1.5, size=3)
        image[inside] = colour + texture
        mask[inside] = cls
    image += rng.normal(0.0, _NOISE, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _shapes_split(ctx: BuildContext, part: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(fixed_seed(f"seg_shapes/{part}"))
    # Pixel centres.
    yy, xx = np.mgrid[0:SHAPES_SIZE, 0:SHAPES_SIZE].astype(np.float64) + 0.5
    x = ctx.staged_array(f"x_{part}", (n, SHAPES_SIZE, SHAPES_SIZE, 3), np.uint8)
    y = ctx.staged_array(f"y_{part}", (n, SHAPES_SIZE, SHAPES_SIZE), np.uint8)
    for row in range(n):
        x[row], y[row] = _shapes_image(rng, xx, yy)
    return x, y


@register_dataset(
    "seg_shapes",
    n_train=SHAPES_COUNTS[0],
    n_test=SHAPES_COUNTS[1],
    input_shape=(3, SHAPES_SIZE, SHAPES_SIZE),
    task="segmentation",
)
def build_seg_shapes(ctx: BuildContext) -> Splits:
    """Generated 64x64 images of circles, squares and triangles on textured backgrounds with
    exact masks (4 classes, background 0): 600 train / 200 test, fixed seeds."""
    x_train, y_train = _shapes_split(ctx, "train", SHAPES_COUNTS[0])
    x_test, y_test = _shapes_split(ctx, "test", SHAPES_COUNTS[1])
    return Splits(x_train, y_train, x_test, y_test, classes=SHAPES_CLASSES, task="segmentation")
