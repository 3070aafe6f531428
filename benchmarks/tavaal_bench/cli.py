"""Command line of benchmarks/bench.py: parse the flags, run the sections, write the results."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from tavaal.training import resolve_device

from .output import format_table, write_results
from .query import bench_query
from .runtime import log, start_clock
from .settings import experiment, resolve_settings, settings_json
from .train import bench_train

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "out" / "results.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark tavaal's training data path and query strategies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and the 8x8 digits CNN (a smoke test)"
    )
    parser.add_argument(
        "--candidates", type=int, help="candidates per query (default: 10000 cuda, 100 cpu)"
    )
    parser.add_argument("--labeled", type=int, help="labeled set (default: candidates / 10)")
    parser.add_argument("--budget", type=int, help="picks per query (default: candidates / 10)")
    parser.add_argument(
        "--train-images", type=int, help="training images (default: 2048 cuda, 256 cpu)"
    )
    parser.add_argument(
        "--train-epochs", type=int, help="timed training epochs (default: 3 cuda, 1 cpu)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="interleaved repeats of each training measurement, best reported (default: 2; "
        "--quick: 1)",
    )
    parser.add_argument(
        "--vae-iterations", type=int, help="VAE/D iterations measured (default: 50 cuda, 3 cpu)"
    )
    parser.add_argument(
        "--ref-workers",
        type=int,
        nargs="+",
        help="DataLoader num_workers of the reference loop, one run each (default: 0 2; "
        "the official codes use 0)",
    )
    parser.add_argument("--methods", nargs="+", help="query methods (default: all registered)")
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's; --quick: 1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-train", action="store_true", help="skip the training benchmark")
    parser.add_argument("--no-query", action="store_true", help="skip the query benchmark")
    parser.add_argument("--verbose", action="store_true", help="show the library's log lines")
    args = parser.parse_args(argv)
    for key in (
        "candidates",
        "labeled",
        "budget",
        "train_images",
        "train_epochs",
        "vae_iterations",
        "threads",
        "repeats",
    ):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.ref_workers and min(args.ref_workers) < 0:
        parser.error("--ref-workers must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> dict:
    start_clock()
    args = parse_args(argv)
    device = resolve_device(args.device)
    settings = resolve_settings(args, device)
    threads = args.threads or settings["profile"].threads
    if threads:
        torch.set_num_threads(threads)
    exp = experiment(settings, settings["methods"])  # validates methods and sizes early
    load_start = [round(v, 2) for v in os.getloadavg()]
    started = time.perf_counter()
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    )
    results: dict = {
        "device": device.type,
        "device_name": device_name or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "quick": bool(args.quick),
        "settings": settings_json(settings, exp),
    }
    try:
        import torchvision

        results["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    log(
        f"benchmark on {device} ({results['threads']} threads), profile "
        f"{settings['profile'].name}, load average {load_start}"
    )
    if settings["run_train"]:
        results["train"] = bench_train(settings, device)
    if settings["run_query"]:
        results["query"] = bench_query(settings, device)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["load_average"] = {
        "start": load_start,
        "end": [round(v, 2) for v in os.getloadavg()],
    }
    out = Path(args.out)
    results = write_results(results, out)
    print(format_table(results))
    print(f"results written to {out}")
    return results
