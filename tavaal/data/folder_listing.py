"""What a practitioner's image folder held when it was prepared, and whether it still does.

A prepared image folder numbers its samples by the sorted paths of the images (and which of them
the ``test_labels`` CSV takes for the test split), so an image added, removed or replaced, or an
edited labels CSV, would renumber or relabel samples the finished results refer to. Preparing
records the listing in ``files.json``: per image its size and modification time, and its sha256
when the images are decoded into arrays (they are read then anyway; a folder read from its files,
such as ImageNet's 1.28M images, is not hashed), and the sha256 of each labels CSV. Before any job
the workflow lists the folder again (sizes and times only: cheap) and compares; an image whose
time alone changed but whose recorded hash still matches (a copy, a ``touch``) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Bad files named one by one in an error; more are counted.
NAMED_AT_MOST = 20
# Images checked in this process below this many per worker; above, on a pool of workers.
PER_WORKER_AT_LEAST = 16


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stat_listing(root: Path, paths: Iterable[str]) -> dict[str, list[int]]:
    """{relative path: [size in bytes, modification time in ns]} of the images `paths`."""
    listing = {}
    for relative in paths:
        status = (Path(root) / relative).stat()
        listing[relative] = [status.st_size, status.st_mtime_ns]
    return listing


def recorded_listing(root: Path, paths: Iterable[str], hashed: bool) -> dict[str, list]:
    """The listing `files.json` records: [size, mtime_ns, sha256 or None] per image."""
    root = Path(root)
    return {
        relative: [size, mtime, file_sha256(root / relative) if hashed else None]
        for relative, (size, mtime) in stat_listing(root, paths).items()
    }


def label_file_hashes(files: Mapping[str, str | None]) -> dict[str, str]:
    """{config key: sha256} of the labels CSVs that are given (``labels``, ``test_labels``)."""
    return {key: file_sha256(Path(path)) for key, path in files.items() if path}


@dataclass(frozen=True)
class FolderChange:
    """Images added, removed or changed since the folder was prepared, and the labels CSVs
    (by config key) whose contents changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    label_files: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.label_files)

    def describe(self) -> str:
        """e.g. ``1 image added (cats/new.png); 2 changed (a.jpg, b.jpg)``."""
        parts = []
        for what, paths in (
            ("added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
        ):
            if paths:
                noun = "image" if len(paths) == 1 else "images"
                parts.append(f"{len(paths)} {noun} {what} ({_named(paths)})")
        parts += [f"the {key} CSV changed" for key in self.label_files]
        return "; ".join(parts)


def compare_listing(
    root: Path,
    recorded: Mapping[str, Sequence],
    current: Mapping[str, Sequence[int]],
    recorded_labels: Mapping[str, str] | None = None,
    current_label_files: Mapping[str, str | None] | None = None,
) -> FolderChange:
    """What differs between the recorded listing and the `current` one (`stat_listing`): an
    image of another size is changed; one of the same size but another time is changed unless
    its contents still have the recorded hash. Labels CSVs are compared by their hashes."""
    added = tuple(sorted(set(current) - set(recorded)))
    removed = tuple(sorted(set(recorded) - set(current)))
    changed = []
    for relative in sorted(set(current) & set(recorded)):
        size, mtime, *rest = recorded[relative]
        sha = rest[0] if rest else None
        now_size, now_mtime = current[relative]
        if now_size != size:
            changed.append(relative)
        elif now_mtime != mtime and (sha is None or file_sha256(Path(root) / relative) != sha):
            changed.append(relative)
    label_changes = []
    if recorded_labels is not None:
        now = label_file_hashes(current_label_files or {})
        keys = sorted(set(now) | set(recorded_labels))
        label_changes = [key for key in keys if now.get(key) != recorded_labels.get(key)]
    return FolderChange(added, removed, tuple(changed), tuple(label_changes))


def listing_digest(
    listing: Mapping[str, Sequence], label_hashes: Mapping[str, str] | None = None
) -> str:
    """A short digest of what a listing says (sizes and times, the labels CSVs' hashes): a param
    of the prepare job, so that a folder changed on purpose is prepared again."""
    plain = {path: list(entry[:2]) for path, entry in sorted(listing.items())}
    text = json.dumps([plain, dict(sorted((label_hashes or {}).items()))], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def unreadable_images(
    root: Path, paths: Iterable[str], decode: bool = True
) -> list[tuple[str, str]]:
    """(path, why) of each image that does not open: a zero-byte file, a file that is no image,
    and with `decode` one whose data does not decode (a truncated JPEG, a PNG with a bad chunk).
    JPEGs are decoded at 1/8 scale (``draft``), which still reads all their data; PNGs are
    verified chunk by chunk without inflating them. Without `decode` only the header is read
    (folders read from their files, too large to decode twice). Many images are checked on all
    usable CPUs (a photo takes about 0.1 s)."""
    paths = list(paths)
    jobs = [(str(Path(root) / relative), decode) for relative in paths]
    workers = min(len(os.sched_getaffinity(0)), len(jobs) // PER_WORKER_AT_LEAST)
    if workers > 1:
        # fork: the workers need PIL only, and a spawned one would re-run the caller's script.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            found = pool.map(_why_unreadable, jobs, chunksize=PER_WORKER_AT_LEAST)
    else:
        found = [_why_unreadable(job) for job in jobs]
    return [(relative, why) for relative, why in zip(paths, found, strict=True) if why]


def _why_unreadable(job: tuple[str, bool]) -> str | None:
    from PIL import Image, UnidentifiedImageError

    path, decode = job
    try:
        if os.path.getsize(path) == 0:
            return "an empty file"
        with Image.open(path) as image:
            if not decode:
                return None
            if image.format == "PNG":
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft(image.mode, (1, 1))
                image.load()
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except (OSError, SyntaxError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def describe_unreadable(where: str, root: Path, bad: Sequence[tuple[str, str]]) -> str:
    """One message naming every unreadable image (up to `NAMED_AT_MOST`, then a count)."""
    named = "; ".join(f"{path} ({why})" for path, why in bad[:NAMED_AT_MOST])
    more = f"; and {len(bad) - NAMED_AT_MOST} more" if len(bad) > NAMED_AT_MOST else ""
    noun = "image" if len(bad) == 1 else "images"
    return (
        f"{where}: {len(bad)} {noun} in {root} cannot be read: {named}{more}. Remove them from "
        "the folder (or move them out of it), or replace them with readable JPEG/PNG files"
    )


def _named(paths: Sequence[str], at_most: int = 5) -> str:
    more = f", and {len(paths) - at_most} more" if len(paths) > at_most else ""
    return ", ".join(paths[:at_most]) + more
