"""Caltech-101 and Caltech-256 at 224x224 (TA-VAAL §4.3, VAAL §4.1).

The images are read from torchvision's folders, from ``data_dir/raw/`` (fetched there with
``--download`` by torchvision's own ``Caltech101``/``Caltech256`` download) or in place from a
folder the user points at (``tavaal prepare caltech101 --source DIR``, the config's
``raw_sources``), which is only read, never written and never downloaded into:

==========  ======================================================================================
source      images, under ``DIR/caltech101/`` (torchvision's root) or ``DIR/`` itself
==========  ======================================================================================
caltech101  ``101_ObjectCategories/<class>/image_NNNN.jpg``: 102 folders, 9,144 images
caltech256  ``256_ObjectCategories/<nnn>.<class>/<nnn>_NNNN.jpg``: 257 folders, 30,607 images
==========  ======================================================================================

(``caltech256`` likewise under ``DIR/caltech256/`` or ``DIR/``.) The images are the ``.jpg``
files directly inside each class folder, as torchvision counts them; other files and sub-folders
are skipped.

**Classes.** The papers' sizes count every image of the archives: 8,125 + 1,019 = 9,144 is all
of ``101_ObjectCategories`` *with* ``BACKGROUND_Google`` (467 images; torchvision drops that
folder, "not a real class", and has 8,677), and 27,607 + 3,000 = 30,607 is all of
``256_ObjectCategories`` with ``257.clutter`` (827 images). So both are kept, as one more class
each, the last: Caltech-101 has 102 classes, torchvision's 101 (sorted folder names, indices
0-100 as torchvision numbers them) then ``BACKGROUND_Google`` (101); Caltech-256 has 257, class
``nnn - 1`` for folder ``nnn.name`` (torchvision's numbering), ``clutter`` being 256. ``Faces`` and
``Faces_easy`` stay two classes, as in torchvision and the 101-category benchmark (``Faces_easy``
is usually described as tighter crops of the ``Faces`` photographs, so the two can share a
photograph across the split; the papers' sizes include both).

**Split.** Caltech has no official split; ours is drawn once with a fixed seed (`fixed_seed`),
stratified: the test split has exactly the paper's size, apportioned to the classes in
proportion to their sizes by largest remainders (class ``c`` with ``n_c`` of ``N`` images gets
``floor(n_c * n_test / N)`` test images, and the ``n_test`` minus their sum classes with the
largest remainders one more, ties to the lower class index); within a class the test images are
a seeded random choice. The sum is ``n_test`` by construction, whatever the per-class counts, so
the full trees give exactly 1,019 and 3,000. A tree with any other number of images (a partial
download or extraction) is refused with one error naming the expected and found counts; the
tests prepare tiny trees by replacing `SETS` (the expected sizes), which is the only way to
change them.

**Storage.** Each image is converted to RGB (Caltech has grey-scale JPEGs), its shorter side
scaled to 224 and centre-cropped (`tavaal.data.image_folder.load_image`), and written straight
into memory-mapped ``x_train.npy``/``x_test.npy`` in the preparation's staging folder
(`BuildContext.staged_array`), never held in memory: 1.38 GB for Caltech-101, 4.61 GB for
Caltech-256. A progress line with the decoding rate is logged every `PROGRESS_EVERY` images. A
killed preparation leaves no dataset (the staging folder is only renamed when complete); the
next one starts from zero.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tavaal.data.image_folder import load_image
from tavaal.data.registry import BuildContext, Provenance, Splits, fixed_seed, register_dataset
from tavaal.data.stratified import split_indices
from tavaal.errors import DatasetError

IMAGE_SIZE = 224
PROGRESS_EVERY = 500
# Errors torchvision's download raises (no network, a failed md5 check, a bad archive).
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError)


@dataclass(frozen=True)
class CaltechSet:
    """Where a Caltech source's images lie and the paper's split sizes."""

    title: str  # for messages
    root_folder: str  # torchvision's folder under the root it is given
    categories: str  # the folder of class folders inside it
    n_train: int
    n_test: int
    num_folders: int  # class folders of the full archive (for messages)
    paper: str

    @property
    def n_images(self) -> int:
        return self.n_train + self.n_test

    @property
    def layout(self) -> str:
        if self.categories.startswith("101"):
            return f"{self.root_folder}/{self.categories}/<class>/image_NNNN.jpg"
        return f"{self.root_folder}/{self.categories}/<nnn>.<class>/<nnn>_NNNN.jpg"


SETS: dict[str, CaltechSet] = {
    "caltech101": CaltechSet(
        "Caltech-101", "caltech101", "101_ObjectCategories", 8125, 1019, 102, "TA-VAAL §4.3"
    ),
    "caltech256": CaltechSet(
        "Caltech-256", "caltech256", "256_ObjectCategories", 27607, 3000, 257, "VAAL §4.1"
    ),
}
BACKGROUND = "BACKGROUND_Google"
_NUMBERED = re.compile(r"^(\d{3})\.(.+)$")


@dataclass(frozen=True)
class _Tree:
    folder: Path  # the categories folder
    classes: tuple[str, ...]
    files: list[tuple[Path, int]]  # (image, class index), by class then file name


def _categories_folder(ctx: BuildContext, source: str) -> Path:
    """The class folders of `source`: in place from ``raw_sources``, else under the raw root
    (downloaded there through torchvision when allowed)."""
    spec = SETS[source]
    root = ctx.given_folder(source)
    if root is not None:
        searched = [root / spec.root_folder / spec.categories, root / spec.categories]
        found = next((path for path in searched if path.is_dir()), None)
        if found is None:
            raise DatasetError(
                f"dataset {ctx.name!r}: no {spec.title} images in {root}: expected "
                f"DIR/{spec.layout} (or DIR/{spec.layout.split('/', 1)[1]}), searched "
                f"{', '.join(str(path) for path in searched)}; a folder given in raw_sources or "
                f"with --source is only read, never downloaded into"
            )
        return found
    root = ctx.raw_root.absolute()
    folder = root / spec.root_folder / spec.categories
    if not folder.is_dir():
        if not ctx.download:
            raise DatasetError(
                f"dataset {ctx.name!r}: {spec.title} images not found: expected "
                f"{root}/{spec.layout}; run `tavaal prepare {ctx.name} --download` (or set "
                f"download: true) to fetch them through torchvision, or `tavaal prepare "
                f"{ctx.name} --source DIR` to read them from a folder holding {spec.layout}"
            )
        _download(ctx, source, root)
    return folder


def _download(ctx: BuildContext, source: str, root: Path) -> None:
    """torchvision's Caltech download (archive md5 checked, extracted under `root`)."""
    from torchvision import datasets

    make = {"caltech101": datasets.Caltech101, "caltech256": datasets.Caltech256}[source]
    ctx.log(f"{ctx.name}: downloading {SETS[source].title} through torchvision into {root}")
    try:
        make(str(root), download=True)
    except _DOWNLOAD_ERRORS as exc:
        raise DatasetError(
            f"dataset {ctx.name!r}: could not download {SETS[source].title} into {root}: {exc}. "
            f"Delete {root / SETS[source].root_folder} and try again, or use --source DIR"
        ) from exc


def _images(folder: Path) -> list[Path]:
    """The ``.jpg`` files directly inside a class folder, sorted by name (hidden ones skipped)."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() == ".jpg" and not path.name.startswith(".") and path.is_file()
    )


def _class_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _tree_101(folder: Path) -> _Tree:
    names = sorted(p.name for p in _class_folders(folder))
    # torchvision's classes (sorted names without the background), then the background.
    ordered = [n for n in names if n != BACKGROUND] + [n for n in names if n == BACKGROUND]
    files = [(path, c) for c, name in enumerate(ordered) for path in _images(folder / name)]
    return _Tree(folder, tuple(ordered), files)


def _tree_256(folder: Path, name: str) -> _Tree:
    numbered: dict[int, Path] = {}
    for path in _class_folders(folder):
        match = _NUMBERED.match(path.name)
        if match is None:
            raise DatasetError(
                f"dataset {name!r}: {path} is not a class folder named <nnn>.<class> "
                f"(001.ak47 ... 257.clutter)"
            )
        number = int(match.group(1))
        if number in numbered:
            raise DatasetError(
                f"dataset {name!r}: class {number:03d} has two folders, "
                f"{numbered[number].name} and {path.name}"
            )
        numbered[number] = path
    missing = sorted(set(range(1, len(numbered) + 1)) - set(numbered))
    if missing:
        raise DatasetError(
            f"dataset {name!r}: {folder} has {len(numbered)} class folders but not the "
            f"numbers {', '.join(f'{n:03d}' for n in missing[:10])}; the class of folder nnn.name "
            f"is nnn - 1, so they must be numbered 001, 002, ... without gaps"
        )
    paths = [numbered[n] for n in sorted(numbered)]
    classes = tuple(_NUMBERED.match(p.name).group(2) for p in paths)  # type: ignore[union-attr]
    files = [(image, c) for c, path in enumerate(paths) for image in _images(path)]
    return _Tree(folder, classes, files)


def _decode(ctx: BuildContext, tree: _Tree, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decode each part's images into a staged (memory-mapped) array, logging progress."""
    total = sum(len(positions) for positions in parts.values())
    ctx.log(f"{ctx.name}: decoding {total} images from {tree.folder} at {IMAGE_SIZE}x{IMAGE_SIZE}")
    start, done = time.monotonic(), 0
    arrays = {}
    for key, positions in parts.items():
        out = ctx.staged_array(key, (len(positions), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for row, position in enumerate(positions):
            out[row] = load_image(tree.files[position][0], IMAGE_SIZE)
            done += 1
            if done % PROGRESS_EVERY == 0 or done == total:
                rate = done / max(time.monotonic() - start, 1e-9)
                ctx.log(f"{ctx.name}: {done}/{total} images decoded ({rate:.0f} images/s)")
        arrays[key] = out
    return arrays


def build_caltech(ctx: BuildContext, source: str) -> Splits:
    """Caltech-101 or Caltech-256 (`source`), split and decoded as the module doc says."""
    spec = SETS[source]
    folder = _categories_folder(ctx, source)
    tree = _tree_101(folder) if source == "caltech101" else _tree_256(folder, ctx.name)
    found = len(tree.files)
    if found != spec.n_images:
        raise DatasetError(
            f"dataset {ctx.name!r}: {folder} holds {found} images in {len(tree.classes)} class "
            f"folders; the full {spec.title} has {spec.n_images} in {spec.num_folders} "
            f"({spec.n_train} train + {spec.n_test} test, {spec.paper}). A partial download or "
            f"extraction? Point --source / raw_sources at the complete {spec.categories}"
        )
    labels = np.array([label for _, label in tree.files], dtype=np.int64)
    train, test = split_indices(labels, spec.n_test, fixed_seed(f"{source}/split"))
    arrays = _decode(ctx, tree, {"x_train": train, "x_test": test})
    return Splits(
        x_train=arrays["x_train"],
        y_train=labels[train],
        x_test=arrays["x_test"],
        y_test=labels[test],
        classes=tree.classes,
        # No md5 sums are known for the individual images.
        provenance=Provenance(folder=folder, md5_verified=False),
    )


@register_dataset(
    "caltech101",
    raw_source="caltech101",
    n_train=SETS["caltech101"].n_train,
    n_test=SETS["caltech101"].n_test,
    input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
)
def build_caltech101(ctx: BuildContext) -> Splits:
    """Caltech-101 with BACKGROUND_Google (102 classes), 8,125 / 1,019 images at 224x224."""
    return build_caltech(ctx, "caltech101")


@register_dataset(
    "caltech256",
    raw_source="caltech256",
    n_train=SETS["caltech256"].n_train,
    n_test=SETS["caltech256"].n_test,
    input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
)
def build_caltech256(ctx: BuildContext) -> Splits:
    """Caltech-256 with 257.clutter (257 classes), 27,607 / 3,000 images at 224x224."""
    return build_caltech(ctx, "caltech256")
