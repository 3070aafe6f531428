"""Dataset records and the name registry.

Adding a dataset is one small builder function decorated with `@register_dataset("name")`. A
builder returns the train/test arrays, labels and class names (`Splits`); storing them in the
canonical on-disk form, computing normalisation statistics and loading is done once, elsewhere
(`tavaal.data.storage`), for every dataset alike. The registration also says which raw source
the builder reads (if any) and the split sizes the dataset is known to have, so both can be
looked up without preparing it.

A dataset serves one task. ``classification`` (the default): one int64 label per sample.
``segmentation``: images (kind ``image``, so every image code path works unchanged) with a uint8
mask per image, (N, H, W) like the images' H and W, holding class indices 0..K-1 and
`IGNORE_INDEX` (255) for pixels that are not scored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tavaal.errors import DatasetError
from tavaal.registry import Registry

Task = Literal["classification", "segmentation"]
TASKS: tuple[str, ...] = ("classification", "segmentation")
# Mask value of the pixels a segmentation loss and metric leave out (Cityscapes' and BDD100K's).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetInfo:
    """What a task learner, VAE and report need to know about a prepared dataset."""

    name: str
    kind: Literal["image", "vector"]
    num_classes: int
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]  # (C, H, W) for images, (D,) for vectors
    mean: tuple[float, ...]  # per channel (images, on the [0,1] scale) or per feature
    std: tuple[float, ...]
    n_train: int
    n_test: int
    # The group of each class when the dataset defines one (CIFAR-100's super-classes, read
    # from its coarse labels); empty otherwise. A noisy oracle confuses classes within a group.
    class_groups: tuple[int, ...] = ()
    # False for an image folder whose pool labels are unknown (stored as -1): only a human
    # oracle can label it (`tavaal.data.image_folder`).
    train_labels_known: bool = True
    task: Task = "classification"
    # Segmentation only: the fraction of all train mask pixels in each class (the rest, 1 - sum,
    # is IGNORE_INDEX); for reports and class weighting. Empty for classification.
    class_pixel_fractions: tuple[float, ...] = ()


@dataclass
class PreparedDataset:
    """A prepared dataset; the arrays are read-only memory maps of the .npy files."""

    info: DatasetInfo
    x_train: np.ndarray  # images: uint8 (N, H, W, C); vectors: float32 (N, D)
    y_train: np.ndarray  # int64 (N,); segmentation: uint8 masks (N, H, W)
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Provenance:
    """Where a builder read its raw files; recorded in ``meta.json``, never needed to load."""

    folder: Path
    md5_verified: bool  # every file read matched a known md5 sum


@dataclass
class Splits:
    """What a builder returns: in-memory arrays in the canonical dtypes and layouts."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    provenance: Provenance | None = None  # None: generated or shipped, no raw files read
    class_groups: tuple[int, ...] = ()  # see DatasetInfo.class_groups
    # An image folder's paths (written to files.json); None for the registered datasets.
    files: dict | None = None
    train_labels_known: bool = True  # see DatasetInfo.train_labels_known
    # "segmentation": y_train and y_test are uint8 masks (N, H, W), see DatasetInfo.task.
    task: Task = "classification"

    @property
    def kind(self) -> Literal["image", "vector"]:
        return "image" if self.x_train.ndim == 4 else "vector"


@dataclass(frozen=True)
class BuildContext:
    """Arguments of a builder call.

    `name` is the dataset being prepared (for messages: a derived dataset such as
    ``cifar10_imb10`` reads the raw files of ``cifar10``); `raw_root` is ``data_dir/raw``, under
    which each raw source has its own folder (``raw/cifar10``, ``raw/svhn``, ...).
    `raw_sources` maps a raw source to a folder that already holds its files, read in place
    instead (`tavaal.data.raw_sources`); nothing is downloaded for those. `staging` is the
    (not yet created) folder the prepared dataset is written in before it is renamed into place,
    see `staged_array`; `log` takes the progress lines of a long preparation.
    """

    name: str
    raw_root: Path
    download: bool
    raw_sources: Mapping[str, Path] = field(default_factory=dict)
    staging: Path | None = None
    log: Callable[[str], None] = print

    def given_folder(self, source: str) -> Path | None:
        """The absolute folder `raw_sources` gives for `source`, checked to be one; None when
        none is given (the raw files are then under `raw_root`)."""
        if source not in self.raw_sources:
            return None
        folder = Path(self.raw_sources[source]).absolute()
        if not folder.is_dir():
            raise DatasetError(
                f"dataset {self.name!r}: the folder given for the raw source {source!r}, "
                f"{folder}, {'is not a folder' if folder.exists() else 'does not exist'}"
            )
        return folder

    def staged_array(self, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A zero-filled array to fill in place of holding it in memory: for an array too large
        for memory (Caltech-256 at 224x224 is 4.6 GB), a writable memory map of the ``.npy`` file
        `key` (``x_train``, ``x_test``, ...) in the staging folder. `tavaal.data.storage` keeps
        that file as it is instead of writing the array again; it is removed with the staging
        folder if the preparation fails or is killed. Without a staging folder (a builder called
        directly) an ordinary array in memory.
        """
        if self.staging is None:
            return np.zeros(shape, dtype=dtype)
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{key}.npy"
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))


Builder = Callable[[BuildContext], Splits]


@dataclass(frozen=True)
class _Registration:
    builder: Builder
    raw_source: str | None
    split_sizes: tuple[int, int] | None
    input_shape: tuple[int, ...] | None
    class_groups: bool
    task: Task = "classification"
    # The config entry of a practitioner's image folder (`tavaal.data.image_folder`); None for
    # the datasets registered in code.
    image_folder: object | None = None
    # Whether the images are read from their files (`tavaal.data.image_files`) rather than
    # prepared into arrays: such jobs decode on several CPUs.
    files: bool = False


DATASETS: Registry[_Registration] = Registry("dataset", DatasetError)


def register_dataset(
    name: str,
    *,
    raw_source: str | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    class_groups: bool = False,
    files: bool = False,
    task: Task = "classification",
) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `name` (a name can be registered once).

    `raw_source` names the raw files the builder reads (``data_dir/raw/<raw_source>/`` or a
    folder the user points it at); several datasets may share one, e.g. the imbalanced CIFAR-10
    variants read ``cifar10``. `n_train` and `n_test` are the split sizes the prepared dataset is
    known to have (give both or neither), see `known_split_sizes`; `input_shape` the sample
    shape the task learner gets, (C, H, W) or (D,), see `known_input_shape`; `class_groups`
    whether the builder returns class groups (`has_class_groups`); `files` whether its images
    are read from their files (`stored_as_files`); `task` what the labels are (`known_task`).
    They let the workflow check protocols and size jobs before anything is prepared.
    """
    if task not in TASKS:
        raise ValueError(f"dataset {name!r}: task {task!r} is not one of {', '.join(TASKS)}")
    if (n_train is None) != (n_test is None):
        raise ValueError(f"dataset {name!r}: give both n_train and n_test, or neither")
    sizes = None
    if n_train is not None and n_test is not None:
        if n_train < 1 or n_test < 1:
            raise ValueError(f"dataset {name!r}: split sizes must be positive")
        sizes = (n_train, n_test)

    def decorate(builder: Builder) -> Builder:
        shape = tuple(input_shape) if input_shape else None
        registration = _Registration(
            builder, raw_source, sizes, shape, class_groups, task, files=files
        )
        DATASETS.add(name, registration)
        return builder

    return decorate


def register_image_folder(
    name: str,
    builder: Builder,
    n_train: int,
    n_test: int,
    input_shape: tuple[int, ...],
    spec,
    files: bool = False,
) -> None:
    """Make a config-declared image folder known under `name` (`tavaal.data.image_folder`).

    Declaring the same name again replaces the earlier declaration (a config is read once per
    process, tests read several); the name of a dataset registered in code is refused.
    """
    existing = DATASETS.find(name)
    if existing is not None and existing.image_folder is None:
        raise DatasetError(
            f"image_folders.{name}: {name!r} is the name of a built-in dataset; choose another"
        )
    registration = _Registration(
        builder,
        None,
        (n_train, n_test),
        tuple(input_shape),
        False,
        image_folder=spec,
        files=files,
    )
    DATASETS.add(name, registration, replace=True)


def image_folder_of(name: str):
    """The `ImageFolderSpec` dataset `name` was declared with, or None for a built-in one."""
    return _registration(name).image_folder


def list_datasets(image_folders: bool = True) -> list[str]:
    """Sorted names of the registered datasets; without the image folders a config declared
    when `image_folders` is False (the built-in datasets alone)."""
    return [n for n, r in DATASETS.items() if image_folders or r.image_folder is None]


def list_raw_sources() -> list[str]:
    """Sorted names of the raw sources the registered datasets read (cifar10, svhn, ...)."""
    return sorted({r.raw_source for _, r in DATASETS.items() if r.raw_source is not None})


def _registration(name: str) -> _Registration:
    return DATASETS.get(name)


def get_builder(name: str) -> Builder:
    return _registration(name).builder


def raw_source(name: str) -> str | None:
    """The raw source dataset `name` reads, or None when it is generated or shipped."""
    return _registration(name).raw_source


def known_split_sizes(name: str) -> tuple[int, int] | None:
    """(n_train, n_test) of dataset `name` as registered, without preparing it.

    None when the registration does not declare them. Unknown names raise `DatasetError`.
    """
    return _registration(name).split_sizes


def known_input_shape(name: str) -> tuple[int, ...] | None:
    """The (C, H, W) or (D,) sample shape of dataset `name` as registered; None if undeclared."""
    return _registration(name).input_shape


def stored_as_files(name: str) -> bool:
    """Whether dataset `name` reads its images from their files (`tavaal.data.image_files`)."""
    return _registration(name).files


def has_class_groups(name: str) -> bool:
    """Whether prepared dataset `name` carries class groups (`DatasetInfo.class_groups`)."""
    return _registration(name).class_groups


def known_task(name: str) -> Task:
    """The task of dataset `name` as registered: "classification" or "segmentation"."""
    return _registration(name).task


def fixed_seed(role: str) -> int:
    """A seed that depends only on `role`, never on the experiment seed.

    Datasets must be identical for every experiment seed, so their random choices (moons
    sampling, splits, subsampling) use constants derived from a name.
    """
    digest = hashlib.sha256(f"tavaal.data/{role}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
