"""A practitioner's own images: a folder of JPEG/PNG files of any size, nested folders allowed.

Declared in the workflow config under ``image_folders.<name>`` (the experiment's ``dataset`` is
that name) and prepared like every other dataset into ``data_dir/<name>/``: each image is
converted to RGB, scaled so that its shorter side is `image_size` and centre-cropped to a square
(`PIL.ImageOps.fit`, bicubic), so that a stage loads the whole pool from memory-mapped arrays.
The images are numbered by their path relative to the folder, sorted (``files.json`` in the
prepared folder keeps the paths), so the same folder always gives the same sample ids; the folder
must not change while experiments use it (the prepared copy is what they use).

Labels are optional:
- ``labels``: a CSV (``path,label``; paths relative to the folder, labels class names) giving
  the label of every pool image. Only then can a simulated oracle answer (a trial run on data
  whose labels are known); without it the pool's labels are unknown (stored as -1) and only
  the human oracle can label it.
- ``test_labels``: a CSV of the same form; those images form the test split on which accuracy
  is measured, and are never offered for labeling. Without it there is no test split and
  ``metrics.json`` reports no accuracy.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

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

    @property
    def where(self) -> str:
        return f"image_folders.{self.name}"

    @property
    def root(self) -> Path:
        return Path(self.path)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data


def image_folder_spec(name: str, entry: Mapping[str, Any]) -> ImageFolderSpec:
    """Check one config entry; one ConfigError naming the key on a bad value."""
    where = f"image_folders.{name}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with path and classes")
    known = {"path", "classes", "image_size", "labels", "test_labels"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}.path: the folder of the images is required")
    classes = entry.get("classes")
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
    )


def declare_image_folders(entries: Mapping[str, Any] | None) -> dict[str, ImageFolderSpec]:
    """Check the config's ``image_folders`` and register each under its name, with the split
    sizes counted from the folder (so jobs are sized and protocols checked before any job)."""
    specs = {}
    for name, entry in (entries or {}).items():
        spec = image_folder_spec(name, entry)
        images = list_images(spec.root)
        test = {}
        if spec.test_labels:
            test = read_path_labels(spec.test_labels, spec.classes, set(images), spec.root)
        n_train = len(images) - len(test)
        if n_train < 1:
            raise DatasetError(f"{spec.where}: every image is a test image; none is left to label")
        shape = (3, spec.image_size, spec.image_size)

        def builder(ctx: BuildContext, spec: ImageFolderSpec = spec) -> Splits:
            return build_image_folder(spec, ctx)

        register_image_folder(name, builder, n_train, len(test), shape, spec)
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


def read_path_labels(
    csv_path: Path, classes: Sequence[str], images: set[str], root: str | Path
) -> dict[str, int]:
    """A ``path,label`` CSV of images of the folder `root` (paths relative to it, among
    `images`): relative image path -> class index. Errors name file and row (the header is row
    1)."""
    csv_path = Path(csv_path)
    try:
        handle = csv_path.open(newline="")
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
    """uint8 (size, size, 3): RGB, shorter side scaled to `size`, centre crop (bicubic)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None
    fitted = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(fitted, dtype=np.uint8)


def build_image_folder(spec: ImageFolderSpec, ctx: BuildContext) -> Splits:
    """Decode the folder into train (pool) and test arrays, written straight into the staging
    folder's memory maps (`BuildContext.staged_array`) with progress lines to `ctx.log`;
    `Splits.files` keeps the paths."""
    log = ctx.log
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
    total = len(pool) + len(test)
    log(f"{spec.where}: decoding {total} images at {spec.image_size}x{spec.image_size}")
    decoded = 0

    def decode(key: str, paths: list[str]) -> np.ndarray:
        nonlocal decoded
        shape = (len(paths), spec.image_size, spec.image_size, 3)
        out = ctx.staged_array(key, shape, np.uint8)
        for i, path in enumerate(paths):
            out[i] = load_image(spec.root / path, spec.image_size)
            decoded += 1
            if decoded % PROGRESS_EVERY == 0:
                log(f"{spec.where}: {decoded}/{total} images decoded")
        return out

    x_train, x_test = decode("x_train", pool), decode("x_test", test)
    y_train = np.array([known.get(path, UNKNOWN_LABEL) for path in pool], dtype=np.int64)
    y_test = np.array([test_labels[path] for path in test], dtype=np.int64)
    return Splits(
        x_train,
        y_train,
        x_test,
        y_test,
        classes=spec.classes,
        files={"root": spec.path, "train": pool, "test": test, "spec": spec.to_dict()},
        train_labels_known=bool(spec.labels),
    )


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
