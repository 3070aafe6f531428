"""Canonical on-disk form of a prepared dataset, and its atomic preparation.

``data_dir/<name>/`` holds ``x_train.npy``, ``y_train.npy``, ``x_test.npy``, ``y_test.npy`` and
``meta.json`` (the `DatasetInfo` fields plus ``format_version``; datasets read from raw files also
record the folder they came from, ``source``, and whether every raw file matched a known md5 sum,
``raw_md5_verified``: informative only, loading does not need them). The folder is written under a
temporary sibling name and renamed in one step, so a killed job leaves either a complete dataset
or none; an existing folder is never rewritten. Loading memory-maps the arrays (no copy) and
checks them against ``meta.json``, which takes milliseconds even for CIFAR.

A builder whose images do not fit in memory (Caltech-256 at 224x224) decodes them straight into
memory-mapped ``.npy`` files in that temporary folder (`BuildContext.staged_array`), which are
kept as written. A job killed outright leaves a hidden ``.<name>.tmp-<host>-<pid>-*`` folder
beside the dataset; nothing reads it, and the next preparation of that dataset removes those of
its own host whose process is gone (a data folder on a shared file system may hold the staging
folders of live jobs on other nodes, which are left alone).

A segmentation dataset (`DatasetInfo.task`) stores uint8 masks (N, H, W) in ``y_train.npy`` and
``y_test.npy``; its ``meta.json`` adds ``task`` and ``class_pixel_fractions``. A classification
dataset's ``meta.json`` has neither key and is byte for byte what it was before segmentation
existed; reading one without ``task`` means classification.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tavaal.atomic import fsync_folder
from tavaal.config import build_dataclass
from tavaal.data.image_files import ImageFiles
from tavaal.data.image_folder import (
    FILES,
    UNKNOWN_LABEL,
    ImageFolderSpec,
    read_files,
)
from tavaal.data.raw_sources import check_raw_folder
from tavaal.data.registry import (
    IGNORE_INDEX,
    TASKS,
    BuildContext,
    DatasetInfo,
    PreparedDataset,
    Splits,
    fixed_seed,
    get_builder,
    image_folder_of,
    list_raw_sources,
    raw_source,
)
from tavaal.errors import ConfigError, DatasetError

# Bump when the files or their meaning change; older folders are then reported, not misread.
FORMAT_VERSION = 1
META_FILE = "meta.json"
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# Images are summed in chunks so the statistics of CIFAR need no float copy of the whole set:
# 4096 images of at most CIFAR's 3072 bytes (the chunks, hence the sums, of every dataset of
# that size or smaller are as before), fewer of larger ones (~100 MB as float64 per chunk).
_STATS_CHUNK = 4096
_STATS_CHUNK_BYTES = _STATS_CHUNK * 32 * 32 * 3
# The per-channel statistics of a dataset stored as files (`ImageFiles`) come from this many of
# its train images, a fixed-seed sample: decoding all of ImageNet for them would take an hour.
STATS_SAMPLE = 10_000
# meta.json's "storage" of a dataset whose images are read from their files; absent: arrays.
FILES_STORAGE = "files"
# Masks are counted in chunks of about this many bytes (np.bincount makes an 8-byte copy).
_MASK_CHUNK_BYTES = 1 << 23
# The DatasetInfo fields only a segmentation dataset writes to meta.json (classification
# datasets keep the meta.json of before).
_SEGMENTATION_KEYS = ("task", "class_pixel_fractions")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove_stale_staging(data_dir: Path, name: str, log: Callable[[str], None]) -> None:
    """Delete the staging folders of `name` that killed jobs of this host left behind."""
    prefix = f".{name}.tmp-{socket.gethostname()}-"
    if not data_dir.is_dir():
        return
    for path in sorted(data_dir.glob(f".{name}.tmp-*")):
        if not path.name.startswith(prefix):
            continue
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log(f"removed {path}, left by a killed preparation (process {pid} is gone)")


def prepare_dataset(
    name: str,
    data_dir: str | Path,
    download: bool = False,
    raw_sources: Mapping[str, str | Path] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write ``data_dir/name`` in the canonical form unless it exists; return that folder.

    Raw downloads (torchvision datasets) live under ``data_dir/raw/``. `raw_sources` maps raw
    sources (`tavaal.data.list_raw_sources`) to folders that already hold their files; those are
    read in place and verified instead (`tavaal.data.raw_sources`), never downloaded. Entries for
    sources the dataset does not read are ignored, so one mapping serves every dataset. An
    existing folder is checked, not rebuilt: a damaged one raises `DatasetError` naming the bad
    file. Builders write their progress lines to `log`. An existing image folder
    (`tavaal.data.declare_image_folders`) prepared from another config entry is refused.
    """
    builder = get_builder(name)
    spec = image_folder_of(name)
    sources = _source_folders(raw_sources or {})
    data_dir = Path(data_dir)
    folder = data_dir / name
    if folder.exists():
        open_prepared(name, data_dir)
        if spec is not None:
            _check_same_folder(folder, spec)
        return folder
    _remove_stale_staging(data_dir, name, log)
    staging = data_dir / f".{name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        ctx = BuildContext(
            name=name,
            raw_root=data_dir / "raw",
            download=download,
            raw_sources=sources,
            staging=staging,
            log=log,
        )
        splits = builder(ctx)
        info = describe(name, splits)
    except BaseException:
        # A builder may have filled memory-mapped arrays there (BuildContext.staged_array).
        shutil.rmtree(staging, ignore_errors=True)
        raise
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        staging.mkdir(exist_ok=True)
        for key in ARRAYS:
            array = getattr(splits, key)
            if not isinstance(array, ImageFiles):  # files.json lists those
                _write_array(staging / f"{key}.npy", array)
        meta = {"format_version": FORMAT_VERSION, **dataclasses.asdict(info)}
        if isinstance(splits.x_train, ImageFiles):
            meta["storage"] = FILES_STORAGE
        if info.task == "classification":
            for key in _SEGMENTATION_KEYS:
                del meta[key]
        if splits.provenance is not None:
            meta["source"] = str(splits.provenance.folder)
            meta["raw_md5_verified"] = splits.provenance.md5_verified
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        _write_bytes(staging / META_FILE, text.encode())
        if splits.files is not None:
            files = json.dumps(splits.files, indent=1, sort_keys=True) + "\n"
            _write_bytes(staging / FILES, files.encode())
        fsync_folder(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.exists():
                raise
            # Another job prepared it first; with fixed seeds its files equal ours.
            shutil.rmtree(staging)
        fsync_folder(data_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"dataset {name!r}: cannot write {folder}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_dataset(
    name: str,
    data_dir: str | Path,
    download: bool = False,
    raw_sources: Mapping[str, str | Path] | None = None,
) -> PreparedDataset:
    """The prepared dataset, preparing it first (see `prepare_dataset`) if its folder is missing."""
    data_dir = Path(data_dir)
    if not (data_dir / name).exists():
        prepare_dataset(name, data_dir, download=download, raw_sources=raw_sources)
    return open_prepared(name, data_dir)


def check_raw_sources(
    names: Iterable[str], data_dir: str | Path, raw_sources: Mapping[str, str | Path]
) -> None:
    """Before any job: for each dataset of `names` still to prepare whose raw source
    `raw_sources` gives, that folder exists and holds the source's files
    (`tavaal.data.raw_sources.check_raw_folder`); a prepared dataset needs no raw files."""
    folders = _source_folders(raw_sources)
    for name in dict.fromkeys(names):
        source = raw_source(name)
        if source in folders and not (Path(data_dir) / name).exists():
            check_raw_folder(name, source, folders[source])


def _check_same_folder(folder: Path, spec: ImageFolderSpec) -> None:
    """An image folder prepared from another config entry would silently mean other data."""
    prepared = read_files(folder).get("spec")
    if prepared != spec.to_dict():
        changed = sorted(k for k in spec.to_dict() if (prepared or {}).get(k) != spec.to_dict()[k])
        raise DatasetError(
            f"{folder}: prepared from another {spec.where} entry ({', '.join(changed)} differ); "
            f"delete {folder} to prepare it again (its experiments' results then rerun)"
        )


def _source_folders(raw_sources: Mapping[str, str | Path]) -> dict[str, Path]:
    known = list_raw_sources()
    folders = {}
    for source, folder in raw_sources.items():
        if source not in known:
            raise DatasetError(
                f"raw_sources: unknown raw source {source!r}; known: {', '.join(known)}"
            )
        if not str(folder):
            raise DatasetError(f"raw_sources: the folder of {source!r} is empty")
        folders[source] = Path(folder)
    return folders


def open_prepared(name: str, data_dir: str | Path) -> PreparedDataset:
    """Memory-map an existing ``data_dir/name`` after checking it against its ``meta.json``.

    A dataset stored as files gets `ImageFiles` over the paths of its ``files.json`` for its
    images; a missing image is reported when a step reads it.
    """
    folder = Path(data_dir) / name
    info, storage = _read_meta(folder / META_FILE, name)
    if info.kind == "image":
        c, h, w = info.input_shape
        x_dtype, sample_shape = np.dtype(np.uint8), (h, w, c)
    else:
        x_dtype, sample_shape = np.dtype(np.float32), tuple(info.input_shape)
    arrays: dict[str, Any] = {}
    if storage == FILES_STORAGE:
        arrays.update(_image_files(folder, info))
    for key in ARRAYS:
        n = info.n_train if key.endswith("train") else info.n_test
        if key in arrays:
            continue
        if key.startswith("x"):
            dtype, shape = x_dtype, (n, *sample_shape)
        elif info.task == "segmentation":
            dtype, shape = np.dtype(np.uint8), (n, *sample_shape[:2])
        else:
            dtype, shape = np.dtype(np.int64), (n,)
        arrays[key] = _open_array(folder / f"{key}.npy", dtype, shape)
    return PreparedDataset(info=info, **arrays)


def _image_files(folder: Path, info: DatasetInfo) -> dict[str, ImageFiles]:
    files = read_files(folder)
    _, size, _ = info.input_shape
    result = {}
    for part in ("train", "test"):
        paths = files.get(part)
        n = info.n_train if part == "train" else info.n_test
        if not isinstance(paths, list) or len(paths) != n:
            found = len(paths) if isinstance(paths, list) else "no"
            raise _damaged(folder / FILES, f"{found} {part} paths, meta.json says {n}")
        result[f"x_{part}"] = ImageFiles(files["root"], paths, size)
    return result


def describe(name: str, splits: Splits) -> DatasetInfo:
    """Check a builder's arrays and compute the `DatasetInfo` (statistics from the train split)."""
    kind = splits.kind
    task = splits.task
    if task not in TASKS:
        raise DatasetError(f"dataset {name!r}: task {task!r} is not one of {', '.join(TASKS)}")
    segmentation = task == "segmentation"
    if segmentation and kind != "image":
        raise DatasetError(
            f"dataset {name!r}: a segmentation dataset holds images (N, H, W, C); x_train has "
            f"{splits.x_train.ndim} dims"
        )
    want = np.uint8 if kind == "image" else np.float32
    ndim = 4 if kind == "image" else 2
    labels = (np.uint8, 3) if segmentation else (np.int64, 1)
    for key in ARRAYS:
        array = getattr(splits, key)
        expect_dtype, expect_ndim = (want, ndim) if key.startswith("x") else labels
        if array.dtype != expect_dtype or array.ndim != expect_ndim:
            raise DatasetError(
                f"dataset {name!r}: {key} is {array.dtype} with {array.ndim} dims; "
                f"expected {np.dtype(expect_dtype)} with {expect_ndim}"
            )
    if splits.x_train.shape[1:] != splits.x_test.shape[1:]:
        raise DatasetError(
            f"dataset {name!r}: train samples {splits.x_train.shape[1:]} and test samples "
            f"{splits.x_test.shape[1:]} differ in shape"
        )
    num_classes = len(splits.classes)
    for part in ("train", "test"):
        x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if x.shape[0] != y.shape[0] or (x.shape[0] == 0 and not _may_be_empty(splits, part)):
            raise DatasetError(
                f"dataset {name!r}: {part} split has {x.shape[0]} samples and {y.shape[0]} labels"
            )
        if segmentation:
            if y.shape[1:] != x.shape[1:3]:
                raise DatasetError(
                    f"dataset {name!r}: {part} masks are {y.shape[1:]} (H, W), the images "
                    f"{x.shape[1:3]}; each mask must have its image's height and width"
                )
            continue
        unknown = part == "train" and not splits.train_labels_known
        allowed = (y == UNKNOWN_LABEL).all() if unknown else ((y >= 0) & (y < num_classes)).all()
        if len(y) and not allowed:
            raise DatasetError(f"dataset {name!r}: {part} labels outside 0..{num_classes - 1}")
    fractions: tuple[float, ...] = ()
    if segmentation:
        if not splits.train_labels_known:
            raise DatasetError(f"dataset {name!r}: a segmentation dataset needs its train masks")
        counts = _mask_counts(name, "train", splits.y_train, num_classes)
        _mask_counts(name, "test", splits.y_test, num_classes)
        total = max(1, int(splits.y_train.size))
        fractions = tuple(int(c) / total for c in counts[:num_classes])
    if kind == "image":
        _, h, w, c = splits.x_train.shape
        input_shape = (c, h, w)
        mean, std = _image_stats(_stats_images(name, splits.x_train))
    else:
        input_shape = (splits.x_train.shape[1],)
        mean, std = _vector_stats(splits.x_train)
    return DatasetInfo(
        name=name,
        kind=kind,
        num_classes=num_classes,
        classes=tuple(splits.classes),
        input_shape=input_shape,
        mean=mean,
        std=std,
        n_train=int(splits.x_train.shape[0]),
        n_test=int(splits.x_test.shape[0]),
        class_groups=_class_groups(name, splits),
        train_labels_known=splits.train_labels_known,
        task=task,
        class_pixel_fractions=fractions,
    )


def _mask_counts(name: str, part: str, masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels of each value 0..255 in `masks`, counted in chunks (a memory map is read once);
    a value that is neither a class index nor IGNORE_INDEX raises one DatasetError."""
    per_mask = max(1, int(np.prod(masks.shape[1:])))
    step = max(1, _MASK_CHUNK_BYTES // per_mask)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, masks.shape[0], step):
        counts += np.bincount(np.asarray(masks[start : start + step]).ravel(), minlength=256)
    bad = [int(v) for v in np.flatnonzero(counts) if num_classes <= v != IGNORE_INDEX]
    if bad:
        where = next(i for i in range(masks.shape[0]) if (np.asarray(masks[i]) == bad[0]).any())
        raise DatasetError(
            f"dataset {name!r}: {part} masks hold the value {bad[0]} ({counts[bad[0]]} pixels, "
            f"first in mask {where}); the values must be class indices 0..{num_classes - 1} or "
            f"{IGNORE_INDEX} (ignore)"
        )
    return counts


def _may_be_empty(splits: Splits, part: str) -> bool:
    # An image folder without test labels has no test split (no accuracy is measured).
    return part == "test" and splits.files is not None


def _class_groups(name: str, splits: Splits) -> tuple[int, ...]:
    groups = tuple(int(g) for g in splits.class_groups)
    if groups and (len(groups) != len(splits.classes) or min(groups) < 0):
        raise DatasetError(
            f"dataset {name!r}: {len(groups)} class groups for {len(splits.classes)} classes"
        )
    return groups


def _stats_images(name: str, images):
    """The images the statistics are computed on: all of them, or for images stored as files
    `STATS_SAMPLE` of them (a fixed-seed sample, in index order)."""
    if not isinstance(images, ImageFiles) or len(images) <= STATS_SAMPLE:
        return images
    rng = np.random.default_rng(fixed_seed(f"{name}/statistics"))
    return images.rows(np.sort(rng.choice(len(images), STATS_SAMPLE, replace=False)))


def _image_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 NHWC images on the [0, 1] scale."""
    channels = images.shape[-1]
    count = images.size // channels
    per_image = max(1, int(np.prod(images.shape[1:])))
    step = max(1, min(_STATS_CHUNK, _STATS_CHUNK_BYTES // per_image))
    total = np.zeros(channels, dtype=np.float64)
    for start in range(0, images.shape[0], step):
        chunk = images[start : start + step].reshape(-1, channels)
        total += chunk.sum(axis=0, dtype=np.float64)
    mean = total / count
    squares = np.zeros(channels, dtype=np.float64)
    for start in range(0, images.shape[0], step):
        chunk = images[start : start + step].reshape(-1, channels).astype(np.float64)
        squares += ((chunk - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / count)
    return _plain(mean / 255.0), _plain(_nonzero(std / 255.0))


def _vector_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = x.astype(np.float64)
    return _plain(x.mean(axis=0)), _plain(_nonzero(x.std(axis=0)))


def _nonzero(std: np.ndarray) -> np.ndarray:
    # A constant channel/feature would divide by zero; leave it unscaled instead.
    return np.where(std > 0, std, 1.0)


def _plain(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _write_array(path: Path, array: np.ndarray) -> None:
    if _is_staged(path, array):
        # Already written in place by the builder (BuildContext.staged_array): make it durable.
        array.flush()
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())
        return
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _is_staged(path: Path, array: np.ndarray) -> bool:
    """Whether `array` is a memory map of the whole ``.npy`` file `path` itself."""
    filename = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or filename is None or not path.exists():
        return False
    if not os.path.samefile(filename, path):
        return False
    stored = np.load(path, mmap_mode="r", allow_pickle=False)
    whole = (stored.shape, stored.dtype, stored.offset) == (array.shape, array.dtype, array.offset)
    if not whole:
        # Writing it again would truncate the file the array maps.
        raise ValueError(f"{path}: the builder returned part of the staged array, not all of it")
    return True


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _damaged(path: Path, problem: str) -> DatasetError:
    return DatasetError(
        f"{path}: {problem}; delete {path.parent} and run `tavaal prepare {path.parent.name}` again"
    )


def _read_meta(path: Path, name: str) -> tuple[DatasetInfo, str]:
    """The `DatasetInfo` of meta.json and its storage ("arrays" or `FILES_STORAGE`)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise _damaged(path, "missing, the folder is not a prepared dataset") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, f"unreadable ({exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _damaged(path, "expected a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise _damaged(path, f"format_version {version!r}, this tavaal reads {FORMAT_VERSION}")
    # DatasetInfo's defaults stand for the keys that came later: class_groups and
    # train_labels_known (datasets prepared before them have none, and known labels), task and
    # class_pixel_fractions (written for segmentation only). meta.json's own keys
    # (format_version, storage, source, raw_md5_verified) are not its fields.
    fields = {f.name for f in dataclasses.fields(DatasetInfo)}
    try:
        info = build_dataclass(DatasetInfo, {k: v for k, v in meta.items() if k in fields})
    except ConfigError as exc:
        raise _damaged(path, str(exc)) from None
    problems = [
        (info.name != name, f"name {info.name!r} does not match the folder {name!r}"),
        (len(info.input_shape) != (3 if info.kind == "image" else 1), "input_shape has wrong rank"),
        (len(info.classes) != info.num_classes, "classes do not match num_classes"),
        (info.n_train < 1 or info.n_test < 0, "n_train must be positive, n_test not negative"),
        (
            bool(info.class_groups) and len(info.class_groups) != info.num_classes,
            "class_groups do not match num_classes",
        ),
        (
            info.task == "segmentation" and info.kind != "image",
            "a segmentation dataset must be of kind image",
        ),
        (
            bool(info.class_pixel_fractions)
            and len(info.class_pixel_fractions) != info.num_classes,
            "class_pixel_fractions do not match num_classes",
        ),
    ]
    for bad, problem in problems:
        if bad:
            raise _damaged(path, problem)
    width = info.input_shape[0]  # channels of an image, features of a vector
    if len(info.mean) != width or len(info.std) != width:
        raise _damaged(path, f"mean/std need {width} values")
    storage = meta.get("storage", "arrays")
    files_of_vectors = storage == FILES_STORAGE and info.kind != "image"
    if storage not in ("arrays", FILES_STORAGE) or files_of_vectors:
        raise _damaged(path, f"storage {storage!r} is not arrays, or files for images")
    return info, storage


def _open_array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(path, "missing") from None
    except (OSError, ValueError, EOFError) as exc:
        # Truncated files fail here: the memory map would extend past the end of the file.
        raise _damaged(path, f"not a readable .npy file ({exc})") from None
    if array.dtype != dtype or array.shape != shape:
        raise _damaged(path, f"holds {array.dtype} {array.shape}, meta.json says {dtype} {shape}")
    return array
