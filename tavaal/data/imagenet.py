"""ImageNet (ILSVRC-2012) at 224x224, read from its JPEG files (VAAL §4.1, supp. Table 2).

The images are read in place from the standard folder layout, ``DIR/train/<wnid>/*.JPEG`` and
``DIR/val/<wnid>/*.JPEG`` (the validation images sorted into class folders, as torchvision's
``ImageFolder`` and most training scripts expect), given as the raw source ``imagenet``
(``tavaal prepare imagenet --source DIR``, the config's ``raw_sources``) or found under
``data_dir/raw/imagenet``. Nothing is downloaded: ImageNet needs a registration.

**Split** (VAAL supp. Table 2: "1153047 + 128120" train + val, 50000 test): the 1,281,167 training
images give the pool (1,153,047) and a held-out set of 128,120, a fixed-seed stratified choice
(`tavaal.data.stratified.split_indices`) that no experiment uses: VAAL kept those images out of
the pool as its validation images, so they are left out here too, and recorded in ``files.json``
(``held_out``). The test split is the 50,000 validation images. The classes are the 1,000 wnids,
sorted (torchvision's class indices). A tree with other counts is refused naming both, before
anything is written; tests replace `EXPECTED` for tiny trees.

**Storage: files.** The pool would be 173 GB as 224x224 arrays, so the prepared folder holds
``files.json`` (the image paths), the labels and ``meta.json`` only, and the images are decoded
when a step reads them (`tavaal.data.image_files`), each exactly as an array dataset would store
it (shorter side 224, centre crop). The per-channel statistics come from a fixed-seed sample of
10,000 pool images (`tavaal.data.storage.STATS_SAMPLE`). Preparing lists the tree (one pass over
the directories) and decodes that sample; a killed preparation leaves nothing behind that looks
complete, and the next starts from zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tavaal.data.image_files import ImageFiles, decode_workers
from tavaal.data.image_folder import class_folders, read_class_tree
from tavaal.data.registry import BuildContext, Provenance, Splits, fixed_seed, register_dataset
from tavaal.data.storage import STATS_SAMPLE
from tavaal.data.stratified import split_indices
from tavaal.errors import DatasetError

IMAGE_SIZE = 224


@dataclass(frozen=True)
class ImageNetCounts:
    """The sizes of the full ILSVRC-2012 tree and of VAAL's split of it."""

    classes: int
    train_images: int
    val_images: int
    held_out: int

    @property
    def pool(self) -> int:
        return self.train_images - self.held_out


EXPECTED = ImageNetCounts(classes=1000, train_images=1_281_167, val_images=50_000, held_out=128_120)


def _source_folder(ctx: BuildContext) -> Path:
    root = ctx.given_folder("imagenet")
    given = "the folder given for the raw source 'imagenet'"
    if root is None:
        root = (ctx.raw_root / "imagenet").absolute()
        given = "the raw folder"
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetError(
            f"dataset {ctx.name!r}: {given}, {root}, must hold train/<wnid>/*.JPEG and "
            f"val/<wnid>/*.JPEG (the validation images sorted into class folders); ImageNet is "
            f"never downloaded: point `tavaal prepare imagenet --source DIR` or raw_sources at it"
        )
    return root


@register_dataset(
    "imagenet",
    raw_source="imagenet",
    n_train=EXPECTED.pool,
    n_test=EXPECTED.val_images,
    input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
    files=True,
)
def build_imagenet(ctx: BuildContext) -> Splits:
    """ImageNet's pool (1,153,047), held-out set and test split (50,000), stored as files."""
    expected = EXPECTED
    root = _source_folder(ctx)
    where = f"dataset {ctx.name!r}"
    ctx.log(f"{ctx.name}: listing the images of {root}")
    classes = tuple(p.name for p in class_folders(root / "train", where))
    train = read_class_tree(root, "train", classes, where)
    val = read_class_tree(root, "val", classes, where)
    found = (len(classes), len(train.paths), len(val.paths))
    wanted = (expected.classes, expected.train_images, expected.val_images)
    if found != wanted:
        raise DatasetError(
            f"{where}: {root} holds {found[1]} train images in {found[0]} class folders and "
            f"{found[2]} val images; ILSVRC-2012 has {wanted[1]} in {wanted[0]} and {wanted[2]} "
            f"(VAAL supp. Table 2). A partial copy, or val/ not sorted into class folders?"
        )
    pool, held_out = split_indices(train.labels, expected.held_out, fixed_seed("imagenet/split"))
    pool_paths = [train.paths[i] for i in pool]
    sample = min(len(pool_paths), STATS_SAMPLE)
    ctx.log(
        f"{ctx.name}: {len(pool_paths)} pool, {len(held_out)} held-out and {len(val.paths)} "
        f"test images in {len(classes)} classes; images are read from their files. Decoding "
        f"{sample} of them on {decode_workers()} worker(s) for the mean and std"
    )
    return Splits(
        x_train=ImageFiles(root, pool_paths, IMAGE_SIZE),
        y_train=train.labels[pool],
        x_test=ImageFiles(root, val.paths, IMAGE_SIZE),
        y_test=np.asarray(val.labels, dtype=np.int64),
        classes=classes,
        provenance=Provenance(folder=root, md5_verified=False),
        files={
            "root": str(root),
            "train": pool_paths,
            "test": val.paths,
            "held_out": [train.paths[i] for i in held_out],
        },
    )
