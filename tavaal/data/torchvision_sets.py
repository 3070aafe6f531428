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
instead, through the same torchvision readers: `tavaal.data.raw_sources` accepts more layouts,
verifies every file and lays the verified files out as torchvision expects in a temporary root.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

# What torchvision, pickle and the parsers torchvision calls raise for missing, truncated or
# damaged files, and for failed downloads (URLError is an OSError).
_READ_ERRORS = (
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    EOFError,
    AssertionError,
    NotImplementedError,
    pickle.UnpicklingError,
)


@dataclass(frozen=True)
class _RawRoot:
    """Where torchvision reads a source's files from, and where they really lie."""

    root: Path  # given to torchvision
    folder: Path  # the files' folder: recorded in meta.json and named in messages
    download: bool  # whether torchvision may fetch missing files into `root`
    in_place: bool  # a folder of the user's, verified file by file; never written to


@contextmanager
def _raw_root(ctx: BuildContext, source: str) -> Iterator[_RawRoot]:
    """The root torchvision reads `source` from. A folder of the user's (`ctx.raw_sources`) is
    verified and shown through a temporary root (`raw_sources.torchvision_root`); otherwise it is
    ``data_dir/raw/<source>``, and one error lists every missing file unless they may be
    downloaded."""
    if source in ctx.raw_sources:
        given = ctx.raw_sources[source]
        with raw_sources.torchvision_root(ctx.name, source, given) as (root, folder):
            yield _RawRoot(root, folder, download=False, in_place=True)
        return
    layout = LAYOUTS[source]
    root = ctx.raw_root / source
    folder = root / layout.subfolder
    if folder.is_dir():
        _gunzip_missing(folder, layout)
    missing = [name for name in layout.names if not (folder / name).is_file()]
    if missing and not ctx.download:
        names = ", ".join(str(Path(layout.subfolder, name)) for name in missing)
        raise DatasetError(
            f"dataset {ctx.name!r}: raw files not found in {root} (missing: {names}); "
            f"run `tavaal prepare {ctx.name} --download` (or set download: true) to fetch them, "
            f"or `tavaal prepare {ctx.name} --source DIR` to read them from a folder you have"
        )
    root.mkdir(parents=True, exist_ok=True)
    yield _RawRoot(root, folder.absolute(), download=ctx.download, in_place=False)


def _gunzip_missing(folder: Path, layout: raw_sources.RawLayout) -> None:
    """Extract ``name.gz`` where only the download is present (torchvision reads ``name``)."""
    for spec in layout.files:
        target, packed = folder / spec.name, folder / f"{spec.name}.gz"
        if spec.gz_md5 is None or target.is_file() or not packed.is_file():
            continue
        try:
            # Never a half-extracted file under the real name.
            with atomic_write(target) as partial:
                with gzip.open(packed, "rb") as source, partial.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{packed}: cannot extract: {exc}") from exc


def _read(ctx: BuildContext, raw: _RawRoot, open_split: Callable[[], Any]) -> Any:
    """Call a torchvision constructor, turning its errors into one DatasetError."""
    try:
        return open_split()
    except _READ_ERRORS as exc:
        if raw.in_place:
            raise DatasetError(
                f"dataset {ctx.name!r}: could not read the raw files in {raw.folder}: {exc} "
                f"(their md5 sums are the expected ones)"
            ) from exc
        action = "download or read" if raw.download else "read"
        raise DatasetError(
            f"dataset {ctx.name!r}: could not {action} the raw files in {raw.root}: {exc}. "
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
    from torchvision import datasets

    dataset_cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[source]
    with _raw_root(ctx, source) as raw:
        root = str(raw.root)
        train = _read(ctx, raw, lambda: dataset_cls(root, train=True, download=raw.download))
        test = _read(ctx, raw, lambda: dataset_cls(root, train=False, download=False))
        groups: tuple[int, ...] = ()
        if source == "cifar100":
            # torchvision keeps only the fine labels; the coarse ones are in the same file, whose
            # md5 sum has just been checked.
            path = raw.folder / dataset_cls.train_list[0][0]
            groups = _cifar100_class_groups(path, _unpickle_cifar(path, path.read_bytes()))
    # torchvision already reshapes the (N, 3072) rows (R, G, B planes) to N x 32 x 32 x 3.
    splits = Splits(
        x_train=np.ascontiguousarray(train.data, dtype=np.uint8),
        y_train=np.asarray(train.targets, dtype=np.int64),
        x_test=np.ascontiguousarray(test.data, dtype=np.uint8),
        y_test=np.asarray(test.targets, dtype=np.int64),
        classes=tuple(str(name) for name in train.classes),
        # torchvision's constructor checks every file's md5 sum (and verify_source did before).
        provenance=Provenance(folder=raw.folder, md5_verified=True),
        class_groups=groups,
    )
    return _checked(ctx, splits, (32, 32, 3))


def _parse_error(path: Path, what: str, exc: BaseException) -> DatasetError:
    return DatasetError(f"{path}: not {what} ({type(exc).__name__}: {exc})")


def _unpickle_cifar(path: Path, data: bytes) -> dict:
    # The CIFAR pickles were written by Python 2; latin1 turns their byte strings into str.
    try:
        obj = pickle.loads(data, encoding="latin1")
    except _READ_ERRORS as exc:
        raise _parse_error(path, "a CIFAR python pickle", exc) from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: not a CIFAR python pickle (holds {type(obj).__name__})")
    return obj


def _cifar100_class_groups(path: Path, batch: dict) -> tuple[int, ...]:
    """The super-class (coarse label) of each of CIFAR-100's 100 fine classes, from the
    `fine_labels` and `coarse_labels` of an unpickled train file (VAAL §5.2 confuses classes
    within a super-class). Every fine class must have exactly one coarse label."""
    try:
        fine = np.asarray(batch["fine_labels"], dtype=np.int64)
        coarse = np.asarray(batch["coarse_labels"], dtype=np.int64)
    except _READ_ERRORS as exc:
        raise _parse_error(path, "a CIFAR-100 file with fine and coarse labels", exc) from exc
    if fine.shape != coarse.shape or fine.ndim != 1:
        raise DatasetError(f"{path}: {fine.size} fine labels but {coarse.size} coarse labels")
    groups = np.full(100, -1, dtype=np.int64)
    for cls in range(100):
        found = np.unique(coarse[fine == cls])
        if len(found) > 1:
            raise DatasetError(f"{path}: fine class {cls} has coarse labels {found.tolist()}")
        if len(found):
            groups[cls] = found[0]
    if (groups < 0).any():
        # A sample file too small to hold every class: no groups rather than wrong ones.
        return ()
    return tuple(int(g) for g in groups)


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
    from torchvision import datasets

    with _raw_root(ctx, "svhn") as raw:
        root = str(raw.root)
        train = _read(ctx, raw, lambda: datasets.SVHN(root, split="train", download=raw.download))
        test = _read(ctx, raw, lambda: datasets.SVHN(root, split="test", download=raw.download))
    # torchvision holds SVHN as (N, C, H, W); the canonical layout is NHWC.
    splits = Splits(
        x_train=np.ascontiguousarray(train.data.transpose(0, 2, 3, 1), dtype=np.uint8),
        y_train=np.asarray(train.labels, dtype=np.int64),
        x_test=np.ascontiguousarray(test.data.transpose(0, 2, 3, 1), dtype=np.uint8),
        y_test=np.asarray(test.labels, dtype=np.int64),
        classes=tuple(str(digit) for digit in range(10)),
        # torchvision's constructor checks the split file's md5 sum (and verify_source did before).
        provenance=Provenance(folder=raw.folder, md5_verified=True),
    )
    return _checked(ctx, splits, (32, 32, 3))


@register_dataset(
    "fashion_mnist",
    raw_source="fashion_mnist",
    n_train=60000,
    n_test=10000,
    input_shape=(1, 28, 28),
)
def build_fashion_mnist(ctx: BuildContext) -> Splits:
    """Fashion-MNIST (60,000 / 10,000 images 28x28x1) via torchvision.datasets.FashionMNIST."""
    from torchvision import datasets

    make = datasets.FashionMNIST
    with _raw_root(ctx, "fashion_mnist") as raw:
        root = str(raw.root)
        train = _read(ctx, raw, lambda: make(root, train=True, download=raw.download))
        test = _read(ctx, raw, lambda: make(root, train=False, download=raw.download))
    splits = Splits(
        x_train=np.ascontiguousarray(train.data.numpy(), dtype=np.uint8)[..., None],
        y_train=train.targets.numpy().astype(np.int64),
        x_test=np.ascontiguousarray(test.data.numpy(), dtype=np.uint8)[..., None],
        y_test=test.targets.numpy().astype(np.int64),
        classes=tuple(str(name) for name in make.classes),
        # torchvision checks the md5 sums of what it downloads, not of the files it finds; a
        # folder of the user's was verified file by file.
        provenance=Provenance(folder=raw.folder, md5_verified=raw.in_place),
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
