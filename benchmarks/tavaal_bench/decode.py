"""Decoding throughput of a dataset read from its JPEG files (`tavaal.data.image_files`).

    python benchmarks/decode_throughput.py [--images 600] [--workers 1 2] [--size 224]
                                           [--batch 64] [--out FILE.json]

Writes `--images` JPEGs of ImageNet's typical size (500x375, quality 90, smooth random scenes
with texture, so the files are about the size of ImageNet's photographs; the mean file size is
reported) into a temporary folder, then times `ImageFiles` reading all of them at `--size` with
each worker count of `--workers`: once as one request (`rows`) and once as a training loop
would, in batches of `--batch` through `prefetch`. Each run starts a fresh decoding pool, which
is started (and its start timed apart) before the clock runs. The files are in the page cache
after writing, so the figures are decoding rates, not disk rates.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """`count` JPEGs of 500x375 under `folder`; their relative paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        scene = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC))
        texture = rng.normal(0, 12, size=scene.shape)
        pixels = np.clip(scene + texture, 0, 255).astype(np.uint8)
        relative = f"train/n{number % 10:08d}/image_{number:05d}.JPEG"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / relative, format="JPEG", quality=90)
        paths.append(relative)
    return paths


def measure(folder: Path, paths: list[str], size: int, workers: int, batch: int) -> dict:
    from tavaal.data import image_files

    files = image_files.ImageFiles(folder, paths, size, workers=workers)
    image_files._POOL.close()
    started = time.perf_counter()
    files.rows(np.arange(min(len(files), 2 * image_files.INLINE_BELOW)))  # starts the pool
    startup = time.perf_counter() - started
    started = time.perf_counter()
    files.rows(np.arange(len(files)))
    one_request = time.perf_counter() - started
    batches = np.array_split(np.arange(len(files)), max(1, len(files) // batch))
    started = time.perf_counter()
    served = sum(len(rows) for rows in files.prefetch(batches))
    prefetched = time.perf_counter() - started
    image_files._POOL.close()
    return {
        "workers": workers,
        "images": len(files),
        "size": size,
        "pool_start_seconds": round(startup, 3),
        "images_per_second": round(len(files) / one_request, 1),
        "prefetch_images_per_second": round(served / prefetched, 1),
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tavaal-decode-") as tmp:
        folder = Path(tmp)
        paths = write_images(folder, args.images)
        mean_kb = np.mean([os.path.getsize(folder / p) for p in paths]) / 1024
        results = []
        for workers in args.workers:
            result = measure(folder, paths, args.size, workers, args.batch)
            result.update(mean_file_kb=round(float(mean_kb), 1), load=os.getloadavg()[0])
            results.append(result)
            print(
                f"{workers} worker(s): {result['images_per_second']} images/s in one request, "
                f"{result['prefetch_images_per_second']} images/s in batches of {args.batch} "
                f"(pool start {result['pool_start_seconds']} s; files {mean_kb:.0f} KB)",
                flush=True,
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results
