"""The files of one labeling batch: label_request.json, to_label.csv and the human's labels file.

A batch folder holds `to_label.csv` (columns `sample_id,path,label`, label empty, rows in the
order the samples were picked) and `label_request.json` (experiment, method, seed, stage, the
class names in class-index order, `labels_file` and `to_label`). The human's answer, the labels
file, has the same columns and rows in the same order, each `label` a class name or empty.
Relative paths in these files are relative to the current working directory. Row numbers in
messages count samples: row 1 is the first sample below the header.

The workflow writes a request (`write_request`, with the batch's contact sheet) and, before it
takes the answers, checks them (`read_answers`, `require_complete`, `check_unchanged`); the
labeling page reads the labels file (`read_labels`) and writes it in to_label.csv's order
(`write_labels`). Both read it by the same rules (`parse_labels`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tavaal.atomic import atomic_write_text
from tavaal.errors import LabelingError

COLUMNS = ("sample_id", "path", "label")
REQUEST_NAME = "label_request.json"
TO_LABEL = "to_label.csv"
CONTACT_SHEET = "contact_sheet.png"
_REQUEST_KEYS = {
    "experiment": str,
    "method": str,
    "seed": int,
    "stage": int,
    "classes": list,
    "labels_file": str,
    "to_label": str,
}


@dataclass(frozen=True)
class Sample:
    sample_id: int
    path: str  # as written in to_label.csv, so the labels file repeats it verbatim
    row: int  # 1-based row number in to_label.csv


@dataclass(frozen=True)
class LabelRequest:
    request_file: Path
    experiment: str
    method: str
    seed: int
    stage: int
    classes: tuple[str, ...]
    labels_file: Path
    to_label: Path
    samples: tuple[Sample, ...]
    _by_id: dict[int, Sample] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.sample_id: s for s in self.samples})

    def sample(self, sample_id: int) -> Sample | None:
        return self._by_id.get(sample_id)


def find_request(path: Path | str) -> Path:
    """The label_request.json meant by `path`: the file itself, its folder, or its to_label.csv."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".csv":
        path = (path if path.is_dir() else path.parent) / REQUEST_NAME
    if not path.is_file():
        raise LabelingError(
            f"{path}: labeling request not found (give a {REQUEST_NAME}, its folder or its "
            "to_label.csv)"
        )
    return path


def read_request(path: Path | str) -> LabelRequest:
    """Read and check a request (a label_request.json, its folder or its to_label.csv)."""
    request_file = find_request(path)
    try:
        raw = json.loads(request_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelingError(f"{request_file}: not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict):
        raise LabelingError(f"{request_file}: expected a JSON object")
    for key, kind in _REQUEST_KEYS.items():
        # bool is an int subclass; a seed of `true` is a mistake, not seed 1.
        if key not in raw or not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            raise LabelingError(f"{request_file}: {key!r} must be a {kind.__name__}")
    classes = raw["classes"]
    if not classes or not all(isinstance(c, str) and c.strip() == c and c for c in classes):
        raise LabelingError(
            f"{request_file}: 'classes' must be a non-empty list of class names (non-empty "
            "strings without surrounding spaces)"
        )
    if len(set(classes)) != len(classes):
        raise LabelingError(f"{request_file}: 'classes' names a class twice")
    to_label = Path(raw["to_label"])
    return LabelRequest(
        request_file=request_file,
        experiment=raw["experiment"],
        method=raw["method"],
        seed=raw["seed"],
        stage=raw["stage"],
        classes=tuple(classes),
        labels_file=Path(raw["labels_file"]),
        to_label=to_label,
        samples=_read_to_label(to_label),
    )


def read_rows(path: Path, data: bytes | None = None) -> list[dict[str, str]]:
    """The rows of a batch CSV (`data`: its bytes, when already read). A leading byte order mark,
    as spreadsheets write in "CSV UTF-8", is not part of the first column's name."""
    try:
        if data is None:
            data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise LabelingError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelingError(f"{path}: not a readable CSV file ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LabelingError(
            f"{path}: columns must be exactly {','.join(COLUMNS)} "
            f"(found {','.join(reader.fieldnames or ()) or 'none'})"
        )
    rows = list(reader)
    for number, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise LabelingError(f"{path}: row {number} does not have exactly 3 fields")
    return rows


def _read_to_label(path: Path) -> tuple[Sample, ...]:
    samples = []
    seen = set()
    for number, row in enumerate(read_rows(path), start=1):
        try:
            sample_id = int(row["sample_id"])
        except ValueError:
            raise LabelingError(
                f"{path}: row {number}: sample_id {row['sample_id']!r} is not an integer"
            ) from None
        if sample_id in seen:
            raise LabelingError(f"{path}: row {number}: sample_id {sample_id} is repeated")
        if not row["path"]:
            raise LabelingError(f"{path}: row {number}: path is empty")
        seen.add(sample_id)
        samples.append(Sample(sample_id, row["path"], number))
    return tuple(samples)


def read_labels(request: LabelRequest) -> dict[int, str]:
    """The labels given so far: {sample_id: class name}; empty when there is no labels file yet
    (the rules of `parse_labels`)."""
    path = request.labels_file
    if not path.exists():
        return {}
    return parse_labels(request)


def parse_labels(request: LabelRequest, data: bytes | None = None) -> dict[int, str]:
    """The one reading of a labels file, for the page and the workflow alike: {sample_id: class
    name} of its labeled rows (`data`: the file's bytes, when already read).

    Rows may come in any order (a spreadsheet may have sorted them) and leave samples out (they
    are unlabeled); spaces around an id or a label are ignored. Refused, naming the file and row
    (row 1 is the first below the header): an id that is not an integer, a sample that was not
    asked for, a sample listed twice, a path that is not the requested sample's, a label that is
    not one of the request's classes.
    """
    path = request.labels_file
    seen: dict[int, int] = {}
    labels: dict[int, str] = {}
    for number, row in enumerate(read_rows(path, data), start=1):
        where = f"{path}: row {number}"
        try:
            sample_id = int(row["sample_id"].strip())
        except ValueError:
            raise LabelingError(
                f"{where}: sample_id {row['sample_id']!r} is not an integer"
            ) from None
        sample = request.sample(sample_id)
        if sample is None:
            raise LabelingError(
                f"{where}: sample {sample_id} was not asked for in {request.to_label}"
            )
        if sample_id in seen:
            raise LabelingError(
                f"{where}: sample {sample_id} is listed twice (also row {seen[sample_id]})"
            )
        seen[sample_id] = number
        if row["path"] != sample.path:
            raise LabelingError(
                f"{where}: sample {sample_id} has path {row['path']!r}; {request.to_label} "
                f"says {sample.path!r}"
            )
        label = row["label"].strip()
        if label and label not in request.classes:
            raise LabelingError(
                f"{where}: unknown class {label!r} for sample {sample_id}; classes: "
                f"{', '.join(request.classes)}"
            )
        if label:
            labels[sample_id] = label
    return labels


def write_labels(request: LabelRequest, labels: Mapping[int, str]) -> bytes:
    """Write the labels file atomically: to_label.csv's rows in order, a class name or empty;
    return the bytes written."""
    path = request.labels_file
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for sample in request.samples:
        writer.writerow([sample.sample_id, sample.path, labels.get(sample.sample_id, "")])
    atomic_write_text(path, out.getvalue())
    return out.getvalue().encode("utf-8")


def write_request(
    folder: Path,
    sample_ids: Sequence[int],
    paths: Sequence[str],
    classes: Sequence[str],
    labels_file: Path,
    about: Mapping[str, object],
) -> None:
    """Write a batch into `folder`: to_label.csv, label_request.json and contact_sheet.png,
    each atomically; `about` holds experiment, method, seed and stage."""
    from tavaal.labeling.contact_sheet import write_contact_sheet

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((int(s), p, "") for s, p in zip(sample_ids, paths, strict=True))
    atomic_write_text(folder / TO_LABEL, out.getvalue())
    request = {
        **about,
        "classes": list(classes),
        "labels_file": str(labels_file),
        "to_label": str(folder / TO_LABEL),
    }
    atomic_write_text(folder / REQUEST_NAME, json.dumps(request, indent=2) + "\n")
    title = (
        f"{about['experiment']} / {about['method']} / seed {about['seed']} / stage "
        f"{about['stage']}: {len(paths)} images to label -> {labels_file}"
    )
    ids = [int(s) for s in sample_ids]
    write_contact_sheet(list(paths), ids, folder / CONTACT_SHEET, title=title)


@dataclass(frozen=True)
class LabelAnswers:
    """What a labels file says: the class index of each answered sample, and the requested
    samples it leaves without a label."""

    path: Path
    labels: dict[int, int]
    missing: tuple[Sample, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def read_answers(request: LabelRequest) -> LabelAnswers:
    """Check the request's labels file before the workflow takes its answers (`parse_labels`);
    empty labels and requested samples without a row are counted as missing
    (`require_complete`)."""
    path = request.labels_file
    if not path.exists():
        raise LabelingError(f"{path}: not found; it answers {request.to_label}")
    names = parse_labels(request)
    labels = {sample_id: request.classes.index(name) for sample_id, name in names.items()}
    missing = tuple(s for s in request.samples if s.sample_id not in names)
    return LabelAnswers(path, labels, missing)


def require_complete(answers: LabelAnswers, request: LabelRequest) -> None:
    """A partially filled labels file is not an answer: say how many rows are missing."""
    if answers.complete:
        return
    first = answers.missing[0]
    raise LabelingError(
        f"{answers.path}: {len(answers.missing)} of {len(request.samples)} samples have no label "
        f"yet (first: sample {first.sample_id}, row {first.row} of {request.to_label}); label "
        "them all, then rerun"
    )


def check_unchanged(
    answers: LabelAnswers, request: LabelRequest, used: Mapping[int, int], used_by: Path
) -> None:
    """`used_by` (a labeled.parquet) was built from this labels file when it said `used`
    (sample id -> class index): a label changed since is refused, naming the row."""
    for sample in request.samples:
        then, now = used.get(sample.sample_id), answers.labels.get(sample.sample_id)
        if then is not None and now != then:
            said = request.classes[now] if now is not None else "no label"
            raise LabelingError(
                f"{answers.path}: sample {sample.sample_id} (row {sample.row} of "
                f"{request.to_label}) now says {said!r}, but {used_by} and every later stage "
                f"were built when it said {request.classes[then]!r}; restore that label (to "
                "relabel, move those results away first)"
            )


def digest(path: Path) -> str:
    """sha256 of a labels file, recorded with the labeled set built from it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
