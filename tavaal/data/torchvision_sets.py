"""Datasets read through torchvision's own dataset classes, or from a folder the user has.

By default raw files live under ``data_dir/raw/<source>/``, which is passed to torchvision as its
``root``:

==============  ============================================================================
source          files torchvision reads (``download`` fetches and extracts them)
==============  ============================================================================
cifar10         ``raw/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
cifar100        ``raw/cifar100/cifar-100-python/{train,test,meta}``
svhn            ``raw/svhn/{train_32x32.mat,test_32x32.mat}``
fashion_mnist   ``raw/fashion_mnist/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
                (the ``.gz`` downloads are accepted too and extracted next to themselves)
==============  ============================================================================

The imbalanced CIFAR-10 variants read ``raw/cifar10``. torchvision checks the md5 sums of the
CIFAR and SVHN files, so a damaged file is reported rather than silently read. torchvision is
imported inside the builders: it costs seconds and most jobs never need it.

A source given a folder of its own (`BuildContext.raw_sources`) is read in place from there
instead, by `tavaal.data.raw_sources`, which accepts more layouts and verifies every file.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tavaal.atomic import atomic_write
from tavaal.data import raw_sources
from tavaal.data.imbalance import imbalance_train, ratio_counts
from tavaal.data.raw_sources import LAYOUTS
from tavaal.data.registry import BuildContext, Provenance, Splits, fixed_seed, register_dataset
from tavaal.errors import DatasetError

# TA-VAAL CVPR §4.3: "randomly reducing the number of samples that were associated with the
# first 5 classes"; the imbalance ratio is the per-class size of the last five classes over
# that of the first five (5000 vs 500 for x10, 5000 vs 50 for x100).
CIFAR10_IMBALANCE_RATIOS = {"cifar10_imb10": 10, "cifar10_imb100": 100}
# TA-VAAL arXiv §5.2, Table 1 (images per class x100). Their class-count entropies in nats are
# 1.6570, 1.8998 and 2.1146, which the paper reports truncated to two decimals: 1.65, 1.89, 2.11.
CIFAR10_ENTROPY_COUNTS = {
    "cifar10_ent165": (3000, 3000, 4000, 5000, 50, 100, 100, 100, 200, 1000),
    "cifar10_ent189": (3000, 3000, 4000, 5000, 500, 500, 200, 300, 500, 2000),
    "cifar10_ent211": (3000, 3000, 4000, 5000, 1000, 1000, 1000, 1000, 1000, 3000),
}

# What torchvision (and the parsers it calls) raise for missing, truncated or damaged files,
# and for failed downloads (URLError is an OSError).
_READ_ERRORS = (
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    EOFError,
    AssertionError,
    pickle.UnpicklingError,
)


def _require(ctx: BuildContext, root: Path, source: str) -> Path:
    """The folder torchvision reads `source` from; one error listing every missing file when
    they cannot be downloaded."""
    layout = LAYOUTS[source]
    folder = root / layout.subfolder
    missing = [name for name in layout.names if not (folder / name).is_file()]
    if missing and not ctx.download:
        names = ", ".join(str(Path(layout.subfolder, name)) for name in missing)
        raise DatasetError(
            f"dataset {ctx.name!r}: raw files not found in {root} (missing: {names}); "
            f"run `tavaal prepare {ctx.name} --download` (or set download: true) to fetch them, "
            f"or `tavaal prepare {ctx.name} --source DIR` to read them from a folder you have"
        )
    return folder


def _read(ctx: BuildContext, folder: Path, open_split: Callable[[], Any]) -> Any:
    """Call a torchvision constructor, turning its errors into one DatasetError."""
    try:
        return open_split()
    except _READ_ERRORS as exc:
        action = "download or read" if ctx.download else "read"
        raise DatasetError(
            f"dataset {ctx.name!r}: could not {action} the raw files in {folder}: {exc}. "
            f"If they are damaged, delete them and run `tavaal prepare {ctx.name} --download`"
        ) from exc


def _checked(ctx: BuildContext, splits: Splits, image_shape: tuple[int, int, int]) -> Splits:
    """Reject raw files whose contents do not have the dataset's shape or label range."""
    num_classes = len(splits.classes)
    for part in ("train", "test"):
        x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if x.shape[1:] != image_shape or x.shape[0] != y.shape[0]:
            raise DatasetError(
                f"dataset {ctx.name!r}: {part} images have shape {x.shape} for {y.shape[0]} "
                f"labels; expected (N, {', '.join(map(str, image_shape))})"
            )
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DatasetError(
                f"dataset {ctx.name!r}: {part} labels outside 0..{num_classes - 1} "
                f"(found {y.min()}..{y.max()})"
            )
    return splits


def _cifar(ctx: BuildContext, source: str) -> Splits:
    if source in ctx.raw_sources:
        splits = raw_sources.read_cifar(ctx.name, source, ctx.raw_sources[source])
        return _checked(ctx, splits, (32, 32, 3))
    from torchvision import datasets

    dataset_cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[source]
    root = ctx.raw_root / source
    folder = _require(ctx, root, source)
    root.mkdir(parents=True, exist_ok=True)
    train = _read(ctx, root, lambda: dataset_cls(str(root), train=True, download=ctx.download))
    test = _read(ctx, root, lambda: dataset_cls(str(root), train=False, download=False))
    groups: tuple[int, ...] = ()
    if source == "cifar100":
        # torchvision keeps only the fine labels; the coarse ones are in the same file, whose
        # md5 sum its constructor has just checked.
        path = root / train.base_folder / train.train_list[0][0]
        batch = raw_sources.unpickle_cifar(path, path.read_bytes())
        groups = raw_sources.cifar100_class_groups(path, batch)
    # torchvision already reshapes the (N, 3072) rows (R, G, B planes) to N x 32 x 32 x 3.
    splits = Splits(
        x_train=np.ascontiguousarray(train.data, dtype=np.uint8),
        y_train=np.asarray(train.targets, dtype=np.int64),
        x_test=np.ascontiguousarray(test.data, dtype=np.uint8),
        y_test=np.asarray(test.targets, dtype=np.int64),
        classes=tuple(str(name) for name in train.classes),
        # torchvision's constructor checks every file's md5 sum.
        provenance=Provenance(folder=folder.absolute(), md5_verified=True),
        class_groups=groups,
    )
    return _checked(ctx, splits, (32, 32, 3))


@register_dataset(
    "cifar10", raw_source="cifar10", n_train=50000, n_test=10000, input_shape=(3, 32, 32)
)
def build_cifar10(ctx: BuildContext) -> Splits:
    """CIFAR-10 (50,000 / 10,000 images 32x32x3, 10 classes) via torchvision.datasets.CIFAR10."""
    return _cifar(ctx, "cifar10")


@register_dataset(
    "cifar100",
    raw_source="cifar100",
    n_train=50000,
    n_test=10000,
    input_shape=(3, 32, 32),
    class_groups=True,
)
def build_cifar100(ctx: BuildContext) -> Splits:
    """CIFAR-100 with its 100 fine labels via torchvision.datasets.CIFAR100; the 20
    super-classes (coarse labels) become the class groups."""
    return _cifar(ctx, "cifar100")


@register_dataset("svhn", raw_source="svhn", n_train=73257, n_test=26032, input_shape=(3, 32, 32))
def build_svhn(ctx: BuildContext) -> Splits:
    """SVHN train/test (32x32x3) via torchvision.datasets.SVHN; the 'extra' split is not used.

    The .mat files label the digit 0 as 10; torchvision maps it to 0, so labels are the digits.
    """
    if "svhn" in ctx.raw_sources:
        splits = raw_sources.read_svhn(ctx.name, ctx.raw_sources["svhn"])
        return _checked(ctx, splits, (32, 32, 3))
    from torchvision import datasets

    root = ctx.raw_root / "svhn"
    folder = _require(ctx, root, "svhn")
    root.mkdir(parents=True, exist_ok=True)
    train = _read(ctx, root, lambda: datasets.SVHN(str(root), split="train", download=ctx.download))
    test = _read(ctx, root, lambda: datasets.SVHN(str(root), split="test", download=ctx.download))
    # torchvision holds SVHN as (N, C, H, W); the canonical layout is NHWC.
    splits = Splits(
        x_train=np.ascontiguousarray(train.data.transpose(0, 2, 3, 1), dtype=np.uint8),
        y_train=np.asarray(train.labels, dtype=np.int64),
        x_test=np.ascontiguousarray(test.data.transpose(0, 2, 3, 1), dtype=np.uint8),
        y_test=np.asarray(test.labels, dtype=np.int64),
        classes=tuple(str(digit) for digit in range(10)),
        # torchvision's constructor checks the split file's md5 sum.
        provenance=Provenance(folder=folder.absolute(), md5_verified=True),
    )
    return _checked(ctx, splits, (32, 32, 3))


def _gunzip_missing(folder: Path) -> None:
    """Extract ``name.gz`` where only the download is present (torchvision reads ``name``)."""
    for name in LAYOUTS["fashion_mnist"].names:
        target, packed = folder / name, folder / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        try:
            # Never a half-extracted file under the real name.
            with atomic_write(target) as partial:
                with gzip.open(packed, "rb") as source, partial.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{packed}: cannot extract: {exc}") from exc


@register_dataset(
    "fashion_mnist",
    raw_source="fashion_mnist",
    n_train=60000,
    n_test=10000,
    input_shape=(1, 28, 28),
)
def build_fashion_mnist(ctx: BuildContext) -> Splits:
    """Fashion-MNIST (60,000 / 10,000 images 28x28x1) via torchvision.datasets.FashionMNIST."""
    if "fashion_mnist" in ctx.raw_sources:
        splits = raw_sources.read_fashion_mnist(ctx.name, ctx.raw_sources["fashion_mnist"])
        return _checked(ctx, splits, (28, 28, 1))
    from torchvision import datasets

    root = ctx.raw_root / "fashion_mnist"
    folder = root / LAYOUTS["fashion_mnist"].subfolder
    if folder.is_dir():
        _gunzip_missing(folder)
    _require(ctx, root, "fashion_mnist")
    root.mkdir(parents=True, exist_ok=True)
    make = datasets.FashionMNIST
    train = _read(ctx, root, lambda: make(str(root), train=True, download=ctx.download))
    test = _read(ctx, root, lambda: make(str(root), train=False, download=ctx.download))
    splits = Splits(
        x_train=np.ascontiguousarray(train.data.numpy(), dtype=np.uint8)[..., None],
        y_train=train.targets.numpy().astype(np.int64),
        x_test=np.ascontiguousarray(test.data.numpy(), dtype=np.uint8)[..., None],
        y_test=test.targets.numpy().astype(np.int64),
        classes=tuple(str(name) for name in datasets.FashionMNIST.classes),
        # torchvision checks the md5 sums of what it downloads, not of the files it finds.
        provenance=Provenance(folder=folder.absolute(), md5_verified=False),
    )
    return _checked(ctx, splits, (28, 28, 1))


def _cifar10_first_five_reduced(ctx: BuildContext, imbalance_ratio: int) -> Splits:
    """CIFAR-10 whose first five classes (airplane, automobile, bird, cat, deer) keep
    1/`imbalance_ratio` of their train images (TA-VAAL CVPR §4.3).

    The paper's text reduces the first five classes; the official code reduced the
    even-numbered classes instead. We follow the text. Test split: untouched (balanced).
    """
    splits = _cifar(ctx, "cifar10")
    counts = ratio_counts(splits.y_train, range(5), 1.0 / imbalance_ratio)
    return imbalance_train(splits, counts, fixed_seed("cifar10/imbalance"))


def _cifar10_counts(ctx: BuildContext, counts: tuple[int, ...]) -> Splits:
    splits = _cifar(ctx, "cifar10")
    # Same seed as the ratio variants: all CIFAR-10 subsets are nested per class.
    return imbalance_train(splits, dict(enumerate(counts)), fixed_seed("cifar10/imbalance"))


# 5 x 500 + 5 x 5,000 train images.
@register_dataset(
    "cifar10_imb10", raw_source="cifar10", n_train=27500, n_test=10000, input_shape=(3, 32, 32)
)
def build_cifar10_imb10(ctx: BuildContext) -> Splits:
    """CIFAR-10, first five classes reduced to 500 train images each (imbalance x10, §4.3)."""
    return _cifar10_first_five_reduced(ctx, CIFAR10_IMBALANCE_RATIOS["cifar10_imb10"])


# 5 x 50 + 5 x 5,000 train images.
@register_dataset(
    "cifar10_imb100", raw_source="cifar10", n_train=25250, n_test=10000, input_shape=(3, 32, 32)
)
def build_cifar10_imb100(ctx: BuildContext) -> Splits:
    """CIFAR-10, first five classes reduced to 50 train images each (imbalance x100, §4.3)."""
    return _cifar10_first_five_reduced(ctx, CIFAR10_IMBALANCE_RATIOS["cifar10_imb100"])


@register_dataset(
    "cifar10_ent165", raw_source="cifar10", n_train=16550, n_test=10000, input_shape=(3, 32, 32)
)
def build_cifar10_ent165(ctx: BuildContext) -> Splits:
    """CIFAR-10 with TA-VAAL arXiv Table 1 row 1 (16,550 train images, entropy 1.65)."""
    return _cifar10_counts(ctx, CIFAR10_ENTROPY_COUNTS["cifar10_ent165"])


@register_dataset(
    "cifar10_ent189", raw_source="cifar10", n_train=19000, n_test=10000, input_shape=(3, 32, 32)
)
def build_cifar10_ent189(ctx: BuildContext) -> Splits:
    """CIFAR-10 with TA-VAAL arXiv Table 1 row 2 (19,000 train images, entropy 1.89)."""
    return _cifar10_counts(ctx, CIFAR10_ENTROPY_COUNTS["cifar10_ent189"])


@register_dataset(
    "cifar10_ent211", raw_source="cifar10", n_train=23000, n_test=10000, input_shape=(3, 32, 32)
)
def build_cifar10_ent211(ctx: BuildContext) -> Splits:
    """CIFAR-10 with TA-VAAL arXiv Table 1 row 3 (23,000 train images, entropy 2.11)."""
    return _cifar10_counts(ctx, CIFAR10_ENTROPY_COUNTS["cifar10_ent211"])
