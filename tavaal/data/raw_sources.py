"""Raw sources: the files of cifar10, cifar100, svhn and fashion_mnist, and verifying them.

`LAYOUTS` lists each source's files and the md5 sums they are verified with. Both ways to the
files end in the same torchvision readers (`tavaal.data.torchvision_sets`): the download path
gives torchvision ``data_dir/raw/<source>/``; a folder the user already has (``tavaal prepare
NAME --source DIR``, the config's ``raw_sources``) is first verified here, file by file, then shown
to torchvision through `torchvision_root`. Such a folder is a system package like Debian's
``dataset-fashion-mnist`` (the four ``.gz`` files in ``/usr/share/datasets/fashion-mnist``), a
cluster filesystem, a previous download. It is only read, never written (it may be read-only),
and nothing is copied out of it but the prepared arrays.

==============  ===============================================================================
source          files, in ``DIR/<torchvision's folder>/`` or, when that does not exist, ``DIR/``
==============  ===============================================================================
cifar10         ``[cifar-10-batches-py/]{data_batch_1..5,test_batch,batches.meta}``
cifar100        ``[cifar-100-python/]{train,test,meta}``
svhn            ``{train,test}_32x32.mat``
fashion_mnist   ``[FashionMNIST/raw/]{train,t10k}-{images-idx3,labels-idx1}-ubyte``, each
                extracted or as its ``.gz`` download
==============  ===============================================================================

Every file is checked against its md5 sum before torchvision reads it, so only the genuine CIFAR
pickles are ever unpickled, and one `DatasetError` lists every missing or damaged file.

The Caltech image trees (raw sources ``caltech101`` and ``caltech256``) are read by
`tavaal.data.caltech`, the Cityscapes and BDD100K trees (``cityscapes``, ``bdd100k``) by
`tavaal.data.segmentation_sets`; no md5 sums are known for their images.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

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


@dataclass
class VerifiedFiles:
    """The files of a raw source found in `folder`, each matching its md5 sum."""

    folder: Path
    plain: dict[str, Path]  # file name -> the file, as it lies in `folder`
    extracted: dict[str, bytes]  # file name -> the contents of its ``.gz`` in `folder`


def verify_source(name: str, source: str, root: Path) -> VerifiedFiles:
    """Find and verify every file of `source` under `root`; `name` is the dataset, for messages.

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
    verified = VerifiedFiles(folder=folder, plain={}, extracted={})
    problems = []
    for spec in layout.files:
        path, content, problem = _verify(folder, spec)
        if problem is not None:
            problems.append(problem)
        elif content is not None:
            verified.extracted[spec.name] = content
        else:
            verified.plain[spec.name] = path
    if problems:
        raise DatasetError(
            f"dataset {name!r}: the raw files of {source!r} in {folder} are missing or damaged "
            f"(searched {', '.join(str(path) for path in searched)}): {'; '.join(problems)}"
        )
    return verified


@contextmanager
def torchvision_root(name: str, source: str, root: Path) -> Iterator[tuple[Path, Path]]:
    """Verify the files of `source` under `root` (`verify_source`), then yield a temporary root
    laid out as torchvision reads it, and the folder the files were found in.

    The folder given is only read (it may be read-only): the temporary root holds, under
    torchvision's subfolder, a symbolic link to each verified file and the contents of each
    verified ``.gz`` (torchvision extracts only what it downloads itself). It is removed on exit.
    """
    verified = verify_source(name, source, root)
    with tempfile.TemporaryDirectory(prefix=f"tavaal-{source}-") as temporary:
        folder = Path(temporary, LAYOUTS[source].subfolder)
        folder.mkdir(parents=True, exist_ok=True)
        for file, path in verified.plain.items():
            (folder / file).symlink_to(path)
        for file, content in verified.extracted.items():
            (folder / file).write_bytes(content)
        yield Path(temporary), verified.folder


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


def _verify(folder: Path, spec: RawFile) -> tuple[Path, bytes | None, str | None]:
    """(the file found, the contents of a ``.gz`` or None for the file itself, None) when `spec`
    checks; otherwise (that file, None, what is wrong)."""
    packed = folder / f"{spec.name}.gz"
    if spec.gz_md5 is not None and packed.is_file():
        try:
            data = packed.read_bytes()
        except OSError as exc:
            return packed, None, _unreadable(packed, exc)
        packed_md5 = _md5(data)
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            return (
                packed,
                None,
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
            None,
            (
                f"{packed.name} has md5 {packed_md5}, expected {spec.gz_md5} (or contents with md5 "
                f"{spec.md5}, found {_md5(content)}, {len(content)} bytes)"
            ),
        )
    path = folder / spec.name
    if not path.is_file():
        alternative = f" (or {packed.name})" if spec.gz_md5 is not None else ""
        return path, None, f"{spec.name}{alternative} missing"
    try:
        # Hashed as it is read: the CIFAR and SVHN files are hundreds of MB.
        with path.open("rb") as handle:
            found = hashlib.file_digest(handle, partial(hashlib.md5, usedforsecurity=False))
    except OSError as exc:
        return path, None, _unreadable(path, exc)
    if found.hexdigest() != spec.md5:
        size = path.stat().st_size
        return (
            path,
            None,
            f"{spec.name} has md5 {found.hexdigest()} ({size} bytes), expected {spec.md5}",
        )
    return path, None, None


def _unreadable(path: Path, exc: OSError) -> str:
    return f"{path.name} is unreadable ({exc.strerror or exc})"
