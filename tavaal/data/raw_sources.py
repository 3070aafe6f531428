"""Raw sources: the files of cifar10, cifar100, svhn and fashion_mnist, and reading them in place.

`LAYOUTS` lists each source's files and the md5 sums they are verified with. The download path
(``data_dir/raw/<source>/``, `tavaal.data.torchvision_sets`) reads them through torchvision;
`read_source` reads them from a folder the user already has (``tavaal prepare NAME --source DIR``,
the config's ``raw_sources``): a system package such as Debian's ``dataset-fashion-mnist`` (the
four ``.gz`` files in ``/usr/share/datasets/fashion-mnist``), a cluster filesystem, a previous
download. That folder is only read, never written (it may be read-only), nothing is copied out
of it but the prepared arrays, and ``.gz`` files are decompressed in memory. The formats are
parsed here, so this path needs neither torch nor torchvision (importing them takes seconds).

==============  ===============================================================================
source          files, in ``DIR/<torchvision's folder>/`` or, when that does not exist, ``DIR/``
==============  ===============================================================================
cifar10         ``[cifar-10-batches-py/]{data_batch_1..5,test_batch,batches.meta}``
cifar100        ``[cifar-100-python/]{train,test,meta}``
svhn            ``{train,test}_32x32.mat``
fashion_mnist   ``[FashionMNIST/raw/]{train,t10k}-{images-idx3,labels-idx1}-ubyte``, each
                extracted or as its ``.gz`` download
==============  ===============================================================================

Every file is checked against its md5 sum before it is parsed, so only the genuine CIFAR pickles
are ever unpickled, and one `DatasetError` lists every missing or damaged file.

The Caltech image trees (raw sources ``caltech101`` and ``caltech256``) are read by
`tavaal.data.caltech`, the Cityscapes and BDD100K trees (``cityscapes``, ``bdd100k``) by
`tavaal.data.segmentation_sets`; no md5 sums are known for their images.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tavaal.data.registry import Provenance, Splits
from tavaal.errors import DatasetError


@dataclass(frozen=True)
class RawFile:
    """One file of a raw source and the md5 sums it is verified with."""

    name: str
    md5: str  # of the file itself (for Fashion-MNIST: the extracted idx file)
    gz_md5: str | None = None  # of its ``.gz`` download, which may stand in for it


@dataclass(frozen=True)
class RawLayout:
    subfolder: str  # torchvision's folder under its root ("" when the files lie in the root)
    files: tuple[RawFile, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.files)


# The md5 sums torchvision checks: CIFAR10/CIFAR100 train_list, test_list and meta, SVHN
# split_list, FashionMNIST.resources (the .gz downloads). tests/test_local_sources.py checks that
# they still equal torchvision's. The sums of the extracted Fashion-MNIST files are those of the
# upstream downloads' contents; they verify repackaged copies too: Debian's dataset-fashion-mnist
# recompresses the .gz files, so only their contents match.
LAYOUTS: dict[str, RawLayout] = {
    "cifar10": RawLayout(
        "cifar-10-batches-py",
        (
            RawFile("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            RawFile("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            RawFile("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            RawFile("data_batch_4", "634d18415352ddfa80567beed471001a"),
            RawFile("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            RawFile("test_batch", "40351d587109b95175f43aff81a1287e"),
            RawFile("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        ),
    ),
    "cifar100": RawLayout(
        "cifar-100-python",
        (
            RawFile("train", "16019d7e3df5f24257cddd939b257f8d"),
            RawFile("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
            RawFile("meta", "7973b15100ade9c7d40fb424638fde48"),
        ),
    ),
    "svhn": RawLayout(
        "",
        (
            RawFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
            RawFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
        ),
    ),
    "fashion_mnist": RawLayout(
        "FashionMNIST/raw",
        (
            RawFile(
                "train-images-idx3-ubyte",
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            RawFile(
                "train-labels-idx1-ubyte",
                "9018921c3c673c538a1fc5bad174d6f9",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            RawFile(
                "t10k-images-idx3-ubyte",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            RawFile(
                "t10k-labels-idx1-ubyte",
                "15d484375f8d13e6eb1aabb0c3f46965",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
    ),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class _CifarFormat:
    label_key: str  # labels in each batch
    meta_file: str
    names_key: str  # class names in the meta file
    train: tuple[str, ...]  # batch files of each split, in order
    test: tuple[str, ...]


_CIFAR_FORMATS = {
    "cifar10": _CifarFormat(
        "labels",
        "batches.meta",
        "label_names",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
    ),
    "cifar100": _CifarFormat("fine_labels", "meta", "fine_label_names", ("train",), ("test",)),
}

# What pickle.loads and scipy's .mat reader raise for bytes that are not what they expect.
_PARSE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    OSError,
)


@dataclass
class RawFiles:
    """The verified contents of a raw source's files (decompressed), read from `folder`."""

    folder: Path
    contents: dict[str, bytes]  # file name (without .gz) -> bytes
    paths: dict[str, Path]  # file name -> the file actually read (``name`` or ``name.gz``)

    def provenance(self) -> Provenance:
        return Provenance(folder=self.folder, md5_verified=True)


def read_source(name: str, source: str, root: Path) -> RawFiles:
    """Read and verify every file of `source` under `root`; `name` is the dataset, for messages.

    Raises one `DatasetError` that lists each missing or mismatching file with what was
    expected, the folder read and the folders searched.
    """
    layout = LAYOUTS[source]
    root = Path(root).absolute()
    if not root.is_dir():
        raise DatasetError(
            f"dataset {name!r}: the folder given for the raw source {source!r}, {root}, "
            f"{'is not a folder' if root.exists() else 'does not exist'}"
        )
    searched = [root / layout.subfolder, root] if layout.subfolder else [root]
    folder = next((path for path in searched if path.is_dir()), root)
    contents, paths, problems = {}, {}, []
    for spec in layout.files:
        path, data, problem = _read_verified(folder, spec)
        if problem is not None:
            problems.append(problem)
        else:
            contents[spec.name], paths[spec.name] = data, path
    if problems:
        raise DatasetError(
            f"dataset {name!r}: the raw files of {source!r} in {folder} are missing or damaged "
            f"(searched {', '.join(str(path) for path in searched)}): {'; '.join(problems)}"
        )
    return RawFiles(folder=folder, contents=contents, paths=paths)


def check_raw_folder(name: str, source: str, root: str | Path) -> None:
    """Before any job: the folder given for `source` exists and, where its files are known
    (`LAYOUTS`), holds each of them (extracted or as its ``.gz``); their md5 sums are checked
    when the prepare job reads them. One `DatasetError` naming the folder and every missing file."""
    root = Path(root).absolute()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(
            f"raw_sources.{source}: {root} {what} (dataset {name!r} reads its files from there)"
        )
    layout = LAYOUTS.get(source)
    if layout is None:
        return
    searched = [root / layout.subfolder, root] if layout.subfolder else [root]
    folder = next((path for path in searched if path.is_dir()), root)
    missing = [
        spec.name
        for spec in layout.files
        if not (folder / spec.name).is_file()
        and not (spec.gz_md5 is not None and (folder / f"{spec.name}.gz").is_file())
    ]
    if missing:
        raise DatasetError(
            f"raw_sources.{source}: {folder} lacks {', '.join(missing)} (dataset {name!r} reads "
            f"them; searched {', '.join(str(path) for path in searched)})"
        )


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_verified(folder: Path, spec: RawFile) -> tuple[Path, bytes, str | None]:
    """(path read, contents, None), or (path, b"", what is wrong) when `spec` does not check."""
    packed = folder / f"{spec.name}.gz"
    if spec.gz_md5 is not None and packed.is_file():
        data, problem = _read_bytes(packed)
        if problem is not None:
            return packed, b"", problem
        packed_md5 = _md5(data)
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            return (
                packed,
                b"",
                (
                    f"{packed.name} is not a readable gzip file ({exc}; md5 {packed_md5}, "
                    f"expected {spec.gz_md5})"
                ),
            )
        # A recompressed copy (Debian's) differs from the download only in its compression.
        if packed_md5 == spec.gz_md5 or _md5(content) == spec.md5:
            return packed, content, None
        return (
            packed,
            b"",
            (
                f"{packed.name} has md5 {packed_md5}, expected {spec.gz_md5} (or contents with md5 "
                f"{spec.md5}, found {_md5(content)}, {len(content)} bytes)"
            ),
        )
    path = folder / spec.name
    if not path.is_file():
        alternative = f" (or {packed.name})" if spec.gz_md5 is not None else ""
        return path, b"", f"{spec.name}{alternative} missing"
    data, problem = _read_bytes(path)
    if problem is not None:
        return path, b"", problem
    found = _md5(data)
    if found != spec.md5:
        return path, b"", f"{spec.name} has md5 {found} ({len(data)} bytes), expected {spec.md5}"
    return path, data, None


def _read_bytes(path: Path) -> tuple[bytes, str | None]:
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return b"", f"{path.name} is unreadable ({exc.strerror or exc})"


def _parse_error(path: Path, what: str, exc: BaseException) -> DatasetError:
    return DatasetError(f"{path}: not {what} ({type(exc).__name__}: {exc})")


def unpickle_cifar(path: Path, data: bytes) -> dict:
    # The CIFAR pickles were written by Python 2; latin1 turns their byte strings into str.
    try:
        obj = pickle.loads(data, encoding="latin1")
    except _PARSE_ERRORS as exc:
        raise _parse_error(path, "a CIFAR python pickle", exc) from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: not a CIFAR python pickle (holds {type(obj).__name__})")
    return obj


def _cifar_batch(path: Path, batch: dict, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) and labels of one unpickled CIFAR batch file."""
    try:
        rows = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except _PARSE_ERRORS as exc:
        raise _parse_error(path, "a CIFAR batch", exc) from exc
    if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32 or labels.shape != (rows.shape[0],):
        raise DatasetError(
            f"{path}: a CIFAR batch holds rows of 3072 bytes and one label each; found data "
            f"{rows.shape} and {labels.shape[0]} labels"
        )
    # A row is the red, then the green, then the blue 32x32 plane; the canonical layout is NHWC.
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar(name: str, source: str, root: Path) -> Splits:
    """CIFAR-10 (source ``cifar10``) or CIFAR-100 with its fine labels (``cifar100``)."""
    raw = read_source(name, source, root)
    fmt = _CIFAR_FORMATS[source]
    parts = {}
    groups: tuple[int, ...] = ()
    for part, files in (("train", fmt.train), ("test", fmt.test)):
        loaded = {f: unpickle_cifar(raw.paths[f], raw.contents[f]) for f in files}
        batches = [_cifar_batch(raw.paths[f], loaded[f], fmt.label_key) for f in files]
        if source == "cifar100" and part == "train":
            (train_file,) = files
            groups = cifar100_class_groups(raw.paths[train_file], loaded[train_file])
        parts[part] = (
            np.ascontiguousarray(np.concatenate([images for images, _ in batches])),
            np.concatenate([labels for _, labels in batches]),
        )
    meta_path = raw.paths[fmt.meta_file]
    classes = unpickle_cifar(meta_path, raw.contents[fmt.meta_file]).get(fmt.names_key)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DatasetError(f"{meta_path}: no list of class names under {fmt.names_key!r}")
    return Splits(
        x_train=parts["train"][0],
        y_train=parts["train"][1],
        x_test=parts["test"][0],
        y_test=parts["test"][1],
        classes=tuple(classes),
        provenance=raw.provenance(),
        class_groups=groups,
    )


def cifar100_class_groups(path: Path, batch: dict) -> tuple[int, ...]:
    """The super-class (coarse label) of each of CIFAR-100's 100 fine classes, from the
    `fine_labels` and `coarse_labels` of an unpickled train file (VAAL §5.2 confuses classes
    within a super-class). Every fine class must have exactly one coarse label."""
    try:
        fine = np.asarray(batch["fine_labels"], dtype=np.int64)
        coarse = np.asarray(batch["coarse_labels"], dtype=np.int64)
    except _PARSE_ERRORS as exc:
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


def _svhn_split(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) and digit labels of one SVHN .mat file (label 10 is the digit 0)."""
    import scipy.io  # only SVHN needs it; it takes a while to import

    try:
        mat = scipy.io.loadmat(io.BytesIO(data))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    except _PARSE_ERRORS as exc:
        raise _parse_error(path, "an SVHN .mat file with X and y", exc) from exc
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise DatasetError(
            f"{path}: SVHN holds X (32, 32, 3, N) and N labels; found X {x.shape}, y {y.shape}"
        )
    labels = y.reshape(-1).astype(np.int64)
    # X is (H, W, C, N); the canonical layout is NHWC.
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2), dtype=np.uint8)
    return images, np.where(labels == 10, 0, labels)


def read_svhn(name: str, root: Path) -> Splits:
    """SVHN train and test (the 'extra' split is not used)."""
    raw = read_source(name, "svhn", root)
    x_train, y_train = _svhn_split(raw.paths["train_32x32.mat"], raw.contents["train_32x32.mat"])
    x_test, y_test = _svhn_split(raw.paths["test_32x32.mat"], raw.contents["test_32x32.mat"])
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=tuple(str(digit) for digit in range(10)),
        provenance=raw.provenance(),
    )


def _idx(path: Path, data: bytes, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes: bytes 0, 0, 0x08, ndim, big-endian uint32 sizes, values."""
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DatasetError(
            f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(starts with {data[:4].hex() or 'nothing'}, expected 000008{ndim:02x})"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(shape):
        raise DatasetError(
            f"{path}: {len(data) - header} values follow the header, its sizes {shape} "
            f"need {math.prod(shape)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_fashion_mnist(name: str, root: Path) -> Splits:
    """Fashion-MNIST as uint8 (N, 28, 28, 1) images and labels 0..9."""
    raw = read_source(name, "fashion_mnist", root)

    def array(file: str, ndim: int) -> np.ndarray:
        return _idx(raw.paths[file], raw.contents[file], ndim)

    return Splits(
        x_train=array("train-images-idx3-ubyte", 3)[..., None],
        y_train=array("train-labels-idx1-ubyte", 1).astype(np.int64),
        x_test=array("t10k-images-idx3-ubyte", 3)[..., None],
        y_test=array("t10k-labels-idx1-ubyte", 1).astype(np.int64),
        classes=FASHION_MNIST_CLASSES,
        provenance=raw.provenance(),
    )
