"""A practitioner's own images: a folder of JPEG/PNG files of any size, nested folders allowed.

Declared in the workflow config under ``image_folders.<name>`` (the experiment's ``dataset`` is
that name) and prepared like every other dataset into ``data_dir/<name>/``: each image is
converted to RGB, scaled so that its shorter side is `image_size` and centre-cropped to a square
(`PIL.ImageOps.fit`, bicubic), so that a stage loads the whole pool from memory-mapped arrays.
The images are numbered by their path relative to the folder, sorted (``files.json`` in the
prepared folder keeps the paths), so the same folder always gives the same sample ids; the folder
must not change while experiments use it (the prepared copy is what they use). ``files.json``
also records the folder's listing (`tavaal.data.folder_listing`), and `folder_state` compares it
with the folder as it is now, so that the workflow finds an added, removed or changed image
before any job.

Labels are optional:
- ``labels``: a CSV (``path,label``; paths relative to the folder, labels class names) giving
  the label of every pool image. Only then can a simulated oracle answer (a trial run on data
  whose labels are known); without it the pool's labels are unknown (stored as -1) and only
  the human oracle can label it.
- ``test_labels``: a CSV of the same form; those images form the test split on which accuracy
  is measured, and are never offered for labeling. Without it there is no test split and
  ``metrics.json`` reports no accuracy.

``layout: class_folders`` reads a labeled tree of ImageNet's shape instead (torchvision's
``ImageFolder`` per split): ``<path>/train/<class>/...`` is the pool and ``<path>/val/<class>/...``
(optional) the test split, every image labeled by its class folder (images at any depth below
it). The classes are the sorted names of the ``train`` class folders, or ``classes`` in that
order when given (then they must be exactly those folders); ``labels``/``test_labels`` do not
apply.

``storage: files`` keeps only the image paths and decodes the images when a step reads them
(`tavaal.data.image_files`), for folders too large to copy into arrays; the default ``arrays``
decodes them once into memory-mapped arrays.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tavaal.data.folder_listing import (
    FolderChange,
    compare_listing,
    describe_unreadable,
    label_file_hashes,
    listing_digest,
    recorded_listing,
    stat_listing,
    unreadable_images,
)
from tavaal.data.registry import BuildContext, Splits, register_image_folder
from tavaal.errors import ConfigError, DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FILES = "files.json"
UNKNOWN_LABEL = -1
# Images decoded between two progress lines of a long prepare.
PROGRESS_EVERY = 500


@dataclass(frozen=True)
class ImageFolderSpec:
    """One ``image_folders.<name>`` entry of the workflow config."""

    name: str
    path: str
    classes: tuple[str, ...]
    image_size: int = 32
    labels: str | None = None
    test_labels: str | None = None
    layout: str = "any"  # or "class_folders"
    storage: str = "arrays"  # or "files"

    @property
    def where(self) -> str:
        return f"image_folders.{self.name}"

    @property
    def root(self) -> Path:
        return Path(self.path)

    @property
    def pool_labels_known(self) -> bool:
        """Whether the pool's labels are known (a labels CSV, or class folders)."""
        return self.labels is not None or self.layout == "class_folders"

    def to_dict(self) -> dict[str, Any]:
        """The entry as recorded in ``files.json``; `layout` and `storage` only when not the
        defaults, so folders prepared before they existed still match their entry."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        for key, default in (("layout", "any"), ("storage", "arrays")):
            if data[key] == default:
                del data[key]
        return data


def image_folder_spec(name: str, entry: Mapping[str, Any]) -> ImageFolderSpec:
    """Check one config entry; one ConfigError naming the key on a bad value."""
    where = f"image_folders.{name}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with path and classes")
    known = {"path", "classes", "image_size", "labels", "test_labels", "layout", "storage"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}.path: the folder of the images is required")
    layout = entry.get("layout", "any")
    if layout not in ("any", "class_folders"):
        raise ConfigError(f"{where}.layout: 'any' or 'class_folders', got {layout!r}")
    storage = entry.get("storage", "arrays")
    if storage not in ("arrays", "files"):
        raise ConfigError(f"{where}.storage: 'arrays' or 'files', got {storage!r}")
    classes = entry.get("classes")
    if layout == "class_folders":
        for key in ("labels", "test_labels"):
            if entry.get(key) is not None:
                raise ConfigError(
                    f"{where}.{key}: not with layout class_folders (its folders are the labels)"
                )
        if classes is None:
            classes = [p.name for p in class_folders(Path(path) / "train", where)]
    if not isinstance(classes, list | tuple) or len(classes) < 2:
        raise ConfigError(f"{where}.classes: a list of at least two class names is required")
    names = [str(c) for c in classes]
    for i, cls in enumerate(names):
        if not cls.strip() or cls != cls.strip() or "," in cls:
            raise ConfigError(
                f"{where}.classes[{i}]: {cls!r} must be non-empty, without surrounding spaces "
                "or commas"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.classes: a class is listed twice")
    size = entry.get("image_size", 32)
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 512:
        raise ConfigError(f"{where}.image_size: an integer in 8..512, got {size!r}")
    for key in ("labels", "test_labels"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}.{key}: a CSV path (path,label) or null")
    return ImageFolderSpec(
        name=name,
        path=path,
        classes=tuple(names),
        image_size=size,
        labels=entry.get("labels"),
        test_labels=entry.get("test_labels"),
        layout=layout,
        storage=storage,
    )


def declare_image_folders(entries: Mapping[str, Any] | None) -> dict[str, ImageFolderSpec]:
    """Check the config's ``image_folders`` and register each under its name, with the split
    sizes counted from the folder (so jobs are sized and protocols checked before any job)."""
    specs = {}
    for name, entry in (entries or {}).items():
        spec = image_folder_spec(name, entry)
        if spec.layout == "class_folders":
            pool, test_tree = class_folder_trees(spec)
            n_train, n_test = len(pool.paths), len(test_tree.paths)
        else:
            images = list_images(spec.root)
            test = {}
            if spec.test_labels:
                test = read_path_labels(spec.test_labels, spec.classes, set(images), spec.root)
            n_train, n_test = len(images) - len(test), len(test)
        if n_train < 1:
            raise DatasetError(f"{spec.where}: every image is a test image; none is left to label")
        shape = (3, spec.image_size, spec.image_size)

        def builder(ctx: BuildContext, spec: ImageFolderSpec = spec) -> Splits:
            return build_image_folder(spec, ctx)

        files = spec.storage == "files"
        register_image_folder(name, builder, n_train, n_test, shape, spec, files=files)
        specs[name] = spec
    return specs


def list_images(root: Path) -> list[str]:
    """Sorted POSIX paths, relative to `root`, of its JPEG/PNG files (any depth, any case of the
    suffix); hidden files and folders are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: the image folder does not exist")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(relative.as_posix())
    if not found:
        raise DatasetError(f"{root}: no .jpg, .jpeg or .png file below this folder")
    return sorted(found)


@dataclass(frozen=True)
class ClassTree:
    """The images of a class-per-folder tree: paths relative to the tree's root (the split
    folder included, e.g. ``train/n01440764/x.JPEG``), sorted, and their class indices."""

    paths: list[str]
    labels: np.ndarray  # int64


def class_folders(folder: Path, where: str) -> list[Path]:
    """The class folders of a split folder (its non-hidden sub-folders), sorted by name."""
    if not folder.is_dir():
        raise DatasetError(f"{where}: {folder} does not exist; expected <split>/<class>/<image>")
    found = sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not found:
        raise DatasetError(f"{where}: {folder} has no class folders")
    return found


def read_class_tree(
    root: Path, split: str, classes: Sequence[str], where: str, required: bool = True
) -> ClassTree:
    """The JPEG/PNG images below ``root/split/<class>/`` (any depth), labeled by the index of
    their class folder in `classes`. A class folder not in `classes` is an error; a class may
    have no folder. Without the split folder: an error if `required`, else an empty tree."""
    root = Path(root)
    folder = root / split
    if not folder.exists() and not required:
        return ClassTree([], np.zeros(0, dtype=np.int64))
    index = {name: i for i, name in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    for class_folder in class_folders(folder, where):
        label = index.get(class_folder.name)
        if label is None:
            raise DatasetError(
                f"{where}: {class_folder} is not one of the {len(classes)} classes "
                f"(those of {root / 'train'})"
            )
        images = [f"{split}/{class_folder.name}/{p}" for p in list_images(class_folder)]
        paths += images
        labels += [label] * len(images)
    return ClassTree(paths, np.asarray(labels, dtype=np.int64))


def class_folder_trees(spec: ImageFolderSpec) -> tuple[ClassTree, ClassTree]:
    """(pool, test) of a ``layout: class_folders`` entry; the classes must be exactly the
    ``train`` class folders."""
    found = [p.name for p in class_folders(spec.root / "train", spec.where)]
    if sorted(found) != sorted(spec.classes):
        extra = sorted(set(found) - set(spec.classes)) or sorted(set(spec.classes) - set(found))
        raise ConfigError(
            f"{spec.where}.classes: must be exactly the class folders of {spec.root / 'train'}; "
            f"{extra[0]!r} is in one but not the other"
        )
    pool = read_class_tree(spec.root, "train", spec.classes, spec.where)
    test = read_class_tree(spec.root, "val", spec.classes, spec.where, required=False)
    return pool, test


def read_path_labels(
    csv_path: Path, classes: Sequence[str], images: set[str], root: str | Path
) -> dict[str, int]:
    """A ``path,label`` CSV of images of the folder `root` (paths relative to it, among
    `images`): relative image path -> class index. Errors name file and row (the header is row
    1)."""
    csv_path = Path(csv_path)
    try:
        # "CSV UTF-8" from spreadsheets starts with a byte order mark: not part of a column name.
        handle = csv_path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read the labels ({exc})") from None
    labels: dict[str, int] = {}
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{csv_path}: needs the columns path,label")
        for row_number, row in enumerate(reader, start=2):
            where = f"{csv_path}, row {row_number}"
            path = Path(row["path"] or "").as_posix()
            if path not in images:
                raise DatasetError(f"{where}: {row['path']!r} is not an image of {root}")
            if path in labels:
                raise DatasetError(f"{where}: {path!r} is listed twice")
            label = (row["label"] or "").strip()
            if not label:
                raise DatasetError(f"{where}: {path!r} has an empty label")
            if label not in classes:
                raise DatasetError(
                    f"{where}: unknown class {label!r}; classes: {', '.join(classes)}"
                )
            labels[path] = list(classes).index(label)
    return labels


def load_image(path: Path, size: int) -> np.ndarray:
    """uint8 (size, size, 3): the image as `read_rgb` sees it (upright, transparency on white),
    shorter side scaled to `size`, centre crop (bicubic)."""
    from PIL import Image, ImageOps

    from tavaal.data.image_reader import read_rgb

    fitted = ImageOps.fit(read_rgb(path), (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(fitted, dtype=np.uint8)


def build_image_folder(spec: ImageFolderSpec, ctx: BuildContext) -> Splits:
    """The entry's pool and test split (`build_any_tree` or `build_class_folders`)."""
    if spec.layout == "class_folders":
        return build_class_folders(spec, ctx)
    return build_any_tree(spec, ctx)


def build_any_tree(spec: ImageFolderSpec, ctx: BuildContext) -> Splits:
    """A folder of images labeled by CSVs, if at all: decoded into train (pool) and test arrays
    (`images_of`); `Splits.files` keeps the paths."""
    images = list_images(spec.root)
    present = set(images)
    test_labels = (
        read_path_labels(spec.test_labels, spec.classes, present, spec.root)
        if spec.test_labels
        else {}
    )
    pool = [path for path in images if path not in test_labels]
    known = read_path_labels(spec.labels, spec.classes, present, spec.root) if spec.labels else {}
    if spec.labels:
        overlap = sorted(set(known) & set(test_labels))
        missing = [path for path in pool if path not in known]
        if overlap:
            raise DatasetError(f"{spec.labels}: {overlap[0]!r} is also a test image")
        if missing:
            raise DatasetError(
                f"{spec.labels}: {len(missing)} pool images have no label, e.g. {missing[0]!r}"
            )
    test = sorted(test_labels)
    x_train, x_test = images_of(spec, ctx, {"x_train": pool, "x_test": test}).values()
    y_train = np.array([known.get(path, UNKNOWN_LABEL) for path in pool], dtype=np.int64)
    y_test = np.array([test_labels[path] for path in test], dtype=np.int64)
    return Splits(
        x_train,
        y_train,
        x_test,
        y_test,
        classes=spec.classes,
        files={
            "root": spec.path,
            "train": pool,
            "test": test,
            "spec": spec.to_dict(),
            **_listing_record(spec, images),
        },
        train_labels_known=spec.pool_labels_known,
    )


def build_class_folders(spec: ImageFolderSpec, ctx: BuildContext) -> Splits:
    """A ``train/<class>/``, ``val/<class>/`` tree: the pool and the test split, labeled by
    their folders."""
    pool, test = class_folder_trees(spec)
    x_train, x_test = images_of(spec, ctx, {"x_train": pool.paths, "x_test": test.paths}).values()
    return Splits(
        x_train,
        pool.labels,
        x_test,
        test.labels,
        classes=spec.classes,
        files={
            "root": spec.path,
            "train": pool.paths,
            "test": test.paths,
            "spec": spec.to_dict(),
            **_listing_record(spec, sorted(pool.paths + test.paths)),
        },
    )


def folder_images(spec: ImageFolderSpec) -> list[str]:
    """The images the entry prepares, sorted paths relative to its folder: every image below it,
    or with ``layout: class_folders`` those of its ``train`` and ``val`` class folders."""
    if spec.layout == "class_folders":
        pool, test = class_folder_trees(spec)
        return sorted(pool.paths + test.paths)
    return list_images(spec.root)


def _label_files(spec: ImageFolderSpec) -> dict[str, str | None]:
    return {"labels": spec.labels, "test_labels": spec.test_labels}


def _listing_record(spec: ImageFolderSpec, images: list[str]) -> dict[str, Any]:
    """What ``files.json`` records of the folder as it was read: the images' listing (hashed
    when they are decoded into arrays anyway) and the labels CSVs' hashes."""
    return {
        "listing": recorded_listing(spec.root, images, hashed=spec.storage == "arrays"),
        "label_files": label_file_hashes(_label_files(spec)),
    }


@dataclass(frozen=True)
class FolderState:
    """An image folder entry against its prepared copy under the data folder.

    `change` is None when there is nothing to compare with: the folder is not prepared yet, or
    was prepared before listings were recorded. `unread` are the images no prepare has read
    yet (all of them, or those added or changed since), to be checked before any job."""

    spec: ImageFolderSpec
    prepared: Path
    is_prepared: bool
    entry_changes: tuple[str, ...]
    change: FolderChange | None
    digest: str | None
    unread: tuple[str, ...]

    @property
    def prepares_again(self) -> bool:
        """Whether the prepare job would run again, replacing the prepared copy."""
        return self.is_prepared and bool(self.entry_changes or self.change)

    def prepare_params(self) -> dict[str, Any]:
        """The param of the prepare job: the entry, and the listing's digest where one is known
        (not for folders prepared before listings were recorded, whose jobs keep their params)."""
        params = self.spec.to_dict()
        if self.digest is not None:
            params["listing"] = self.digest
        return params

    def describe(self) -> str:
        parts = []
        if self.change:
            changed = self.change.describe()
            parts.append(f"{self.spec.root} changed since it was prepared: {changed}")
        if self.entry_changes:
            parts.append(
                f"the {self.spec.where} entry changed since then ({', '.join(self.entry_changes)})"
            )
        return "; ".join(parts)


def folder_state(spec: ImageFolderSpec, data_dir: str | Path) -> FolderState:
    """List the entry's folder now (sizes and times) and compare it with its prepared copy under
    `data_dir`, if any. A labels CSV the entry names must exist."""
    for key, path in _label_files(spec).items():
        if path and not Path(path).is_file():
            raise ConfigError(f"{spec.where}.{key}: {path} does not exist")
    images = folder_images(spec)
    current = stat_listing(spec.root, images)
    label_hashes = label_file_hashes(_label_files(spec))
    prepared = Path(data_dir) / spec.name
    if not prepared.exists():
        digest = listing_digest(current, label_hashes)
        return FolderState(spec, prepared, False, (), None, digest, tuple(images))
    files = read_files(prepared)
    recorded_spec = files.get("spec") or {}
    now_spec = spec.to_dict()
    keys = sorted(set(recorded_spec) | set(now_spec))
    entry_changes = tuple(k for k in keys if recorded_spec.get(k) != now_spec.get(k))
    recorded = files.get("listing")
    if recorded is None:
        return FolderState(spec, prepared, True, entry_changes, None, None, ())
    recorded_labels = files.get("label_files") or {}
    change = compare_listing(spec.root, recorded, current, recorded_labels, _label_files(spec))
    if change:
        digest = listing_digest(current, label_hashes)
    else:
        digest = listing_digest(recorded, recorded_labels)
    return FolderState(
        spec, prepared, True, entry_changes, change, digest, change.added + change.changed
    )


def check_unread_images(state: FolderState) -> None:
    """Before any job: every image no prepare has read yet decodes (opens, with ``storage:
    files``, whose folders are too large to decode twice); one DatasetError naming all that do
    not, so that one run finds them all."""
    decode = state.spec.storage == "arrays"
    bad = unreadable_images(state.spec.root, state.unread, decode=decode)
    if bad:
        raise DatasetError(describe_unreadable(state.spec.where, state.spec.root, bad))


def images_of(spec: ImageFolderSpec, ctx: BuildContext, parts: dict[str, list[str]]) -> dict:
    """Per part (``x_train``, ``x_test``) its images: `ImageFiles` over the paths with
    ``storage: files``, else decoded into the staging folder's memory maps
    (`BuildContext.staged_array`) with progress lines to `ctx.log`."""
    from tavaal.data.image_files import ImageFiles

    size = spec.image_size
    if spec.storage == "files":
        return {key: ImageFiles(spec.root, paths, size) for key, paths in parts.items()}
    total = sum(len(paths) for paths in parts.values())
    ctx.log(f"{spec.where}: decoding {total} images at {size}x{size}")
    decoded = 0
    arrays = {}
    for key, paths in parts.items():
        out = ctx.staged_array(key, (len(paths), size, size, 3), np.uint8)
        for i, path in enumerate(paths):
            out[i] = load_image(spec.root / path, size)
            decoded += 1
            if decoded % PROGRESS_EVERY == 0:
                ctx.log(f"{spec.where}: {decoded}/{total} images decoded")
        arrays[key] = out
    return arrays


def read_files(folder: Path) -> dict[str, Any]:
    """``files.json`` of a prepared image folder: root, train and test relative paths, spec."""
    path = Path(folder) / FILES
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"{path}: missing; {Path(folder).name} was not prepared from an image folder"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    return data


def train_image_paths(folder: Path) -> list[str]:
    """The pool images' paths as the config names them (folder root joined), by sample id."""
    files = read_files(folder)
    root = Path(files["root"])
    return [(root / relative).as_posix() for relative in files["train"]]
