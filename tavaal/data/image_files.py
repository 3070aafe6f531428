"""Images read from their files on demand: the storage of datasets too large to copy into arrays.

ImageNet's 1.28M JPEGs (~140 GB) would be 193 GB as 224x224 arrays, so a dataset stored as
``files`` keeps only the list of its image paths (``files.json``) and labels, and `ImageFiles`
decodes the rows a step asks for, each exactly as the array storage would have stored it
(`tavaal.data.image_folder.load_image`: RGB, shorter side scaled to the size, centre crop,
bicubic), so the two storages give the same bytes for the same image. `ImageFiles` looks like the
read-only uint8 (N, H, W, C) array it stands for (``shape``, ``dtype``, ``len``, indexing by an
int, a slice or an array of indices), so every consumer of ``x_train``/``x_test`` works on it
unchanged; `prefetch` serves a training loop's batches ahead of it.

Decoding is spread over a pool of worker processes (``fork``: the workers need only PIL and
numpy, and a spawned worker would re-run a workflow script, which has no ``__main__`` guard). The
pool has `decode_workers` processes: ``TAVAAL_DECODE_WORKERS`` when set, else the CPUs this
process may run on (a SLURM job's allocation, i.e. the rule's ``threads``). Requests smaller than
`INLINE_BELOW` images are decoded in the calling process. A worker that dies (the out-of-memory
killer ends one on a cluster node) ends the request at once with `DecodeWorkerDied`, instead of
the wait forever of a `multiprocessing.Pool`; the next request starts a fresh pool.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from tavaal.data.image_folder import load_image

WORKERS_ENV = "TAVAAL_DECODE_WORKERS"
# Below this many images a request is decoded in the calling process: shipping it to the pool
# would cost more than it saves.
INLINE_BELOW = 16


def decode_workers() -> int:
    """Worker processes of the decoding pool: ``TAVAAL_DECODE_WORKERS`` or the usable CPUs."""
    value = os.environ.get(WORKERS_ENV)
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"{WORKERS_ENV}={value!r}: expected a positive integer")
        return workers
    return max(1, len(os.sched_getaffinity(0)))


class DecodeWorkerDied(RuntimeError):
    """A process of the decoding pool ended while decoding (killed, e.g. out of memory)."""


def _decode_one(job: tuple[str, int]) -> np.ndarray:
    path, size = job
    return load_image(Path(path), size)


class _Pool:
    """One process-wide pool of decoding workers, started on first use."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._workers = 0
        # A training loop's prefetch thread and its validation may both ask for rows.
        self._lock = threading.Lock()

    def map(self, jobs: list[tuple[str, int]], workers: int) -> list[np.ndarray]:
        if workers <= 1 or len(jobs) < INLINE_BELOW:
            return [_decode_one(job) for job in jobs]
        with self._lock:
            if self._pool is None or self._workers != workers:
                self.close()
                context = multiprocessing.get_context("fork")
                self._pool = ProcessPoolExecutor(workers, mp_context=context)
                self._workers = workers
            pool = self._pool
        chunk = max(1, len(jobs) // (4 * workers))
        try:
            return list(pool.map(_decode_one, jobs, chunksize=chunk))
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    self.close()
            raise DecodeWorkerDied(
                f"a process decoding images ({jobs[0][0]} and {len(jobs) - 1} more) ended "
                f"abruptly, killed by a signal or out of memory; give the job more memory or "
                f"fewer decoding processes ({WORKERS_ENV}, now {workers})"
            ) from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_POOL = _Pool()
atexit.register(_POOL.close)


def close_decoding_pool() -> None:
    """Stop the decoding workers now. A process that ends without its atexit handlers
    (`tavaal.stage.end_process`) must call it first: its forked workers would outlive it."""
    _POOL.close()


class ImageFiles:
    """The images `paths` (relative to `root`) as a read-only uint8 (N, size, size, 3) array,
    decoded on demand by `workers` processes (default `decode_workers`); `side` is `size`."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self, root: str | Path, paths: Sequence[str], size: int, workers: int | None = None
    ) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.side = int(size)
        self.workers = workers

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.side, self.side, 3)

    @property
    def size(self) -> int:
        """Elements, as numpy counts them."""
        return len(self.paths) * self.side * self.side * 3

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({str(self.root)!r}, {len(self)} images at {self.side}x{self.side})"

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self.rows([int(key)])[0]
        if isinstance(key, slice):
            return self.rows(range(*key.indices(len(self))))
        return self.rows(key)

    def rows(self, indices: Iterable[int]) -> np.ndarray:
        """uint8 (len(indices), side, side, 3): the images at `indices`, in that order."""
        positions = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        positions = positions.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        bad = (positions < -n) | (positions >= n)
        if bad.any():
            raise IndexError(f"index {int(positions[bad][0])} is out of range for {n} images")
        jobs = [(str(self.root / self.paths[int(i)]), self.side) for i in positions]
        out = np.empty((len(jobs), self.side, self.side, 3), dtype=np.uint8)
        workers = self.workers if self.workers is not None else decode_workers()
        for row, image in enumerate(_POOL.map(jobs, workers)):
            out[row] = image
        return out

    def prefetch(self, batches: Iterable[np.ndarray], ahead: int = 2) -> Iterator[np.ndarray]:
        """The rows of each index array of `batches`, in order, decoding up to `ahead` batches
        in the background while the caller works on the current one."""
        batches = iter(batches)
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tavaal-decode") as executor:
            for _ in range(ahead):
                batch = next(batches, None)
                if batch is None:
                    break
                pending.append(executor.submit(self.rows, batch))
            while pending:
                rows = pending.popleft().result()
                batch = next(batches, None)
                if batch is not None:
                    pending.append(executor.submit(self.rows, batch))
                yield rows
