"""Progress lines on stderr, device synchronisation and the machine's load average."""

from __future__ import annotations

import os
import sys
import time

import torch

_started: float | None = None


def start_clock() -> None:
    """Progress lines count seconds from here (the start of the run)."""
    global _started
    _started = time.perf_counter()


def log(message: str) -> None:
    if _started is None:
        start_clock()
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def library_log(settings: dict):
    """The `log` handed to the library: its lines on stderr with --verbose, else dropped."""
    if settings["verbose"]:
        return lambda line: log(f"  {line}")
    return lambda line: None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load1() -> float:
    return round(os.getloadavg()[0], 2)
