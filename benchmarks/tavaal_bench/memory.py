"""Memory probes: peak resident memory (and GPU memory) of a measured block of code."""

from __future__ import annotations

import gc
import sys

import torch

from .runtime import sync


def _proc_status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not possible.

    Without the reset the peak is a process-lifetime high-water mark, and a measurement that uses
    less memory than an earlier one would show no increase at all.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


def _ru_maxrss_mb(children: bool = False) -> float:
    import resource  # Unix only: imported where used

    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    value = resource.getrusage(who).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return value / 1024**2 if sys.platform == "darwin" else value / 1024


def _release_freed_memory() -> None:
    """Hand memory that freed tensors left in glibc's heap back to the OS (glibc only), so the
    RSS at the start of a measurement does not include an earlier measurement's leftovers."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def worker_peak_rss_mb() -> float:
    """The largest finished child process's lifetime peak RSS (DataLoader workers are not in
    this process's RSS)."""
    return round(_ru_maxrss_mb(children=True), 1)


class MemoryProbe:
    """Peak memory of the code run inside `with MemoryProbe(device) as probe:`.

    CPU: resident set size (RSS) of this process, peak and increase over the RSS at entry
    (memory that an earlier measurement freed back to the allocator but the process kept is
    reused without showing as an increase). CUDA: torch.cuda.max_memory_allocated as well.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: dict[str, float | str] = {}

    def __enter__(self) -> MemoryProbe:
        gc.collect()
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.gpu_before = torch.cuda.memory_allocated(self.device)
        self.hwm = _reset_peak_rss()
        current = _proc_status_kb("VmRSS")
        self.rss_before = current / 1024 if current is not None else None
        self.ru_before = _ru_maxrss_mb()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            return
        sync(self.device)
        if self.hwm:
            peak = _proc_status_kb("VmHWM") / 1024
            increase = peak - self.rss_before
            how = "VmHWM after resetting it through /proc/self/clear_refs"
        else:
            peak = _ru_maxrss_mb()
            increase = peak - self.ru_before
            how = "getrusage ru_maxrss (process-lifetime peak; the increase may read 0)"
        self.result = {
            "peak_rss_mb": round(peak, 1),
            "peak_rss_increase_mb": round(max(increase, 0.0), 1),
            "rss_measured_by": how,
        }
        if self.device.type == "cuda":
            peak_gpu = torch.cuda.max_memory_allocated(self.device)
            self.result["peak_gpu_mb"] = round(peak_gpu / 1024**2, 1)
            self.result["peak_gpu_increase_mb"] = round(
                max(peak_gpu - self.gpu_before, 0) / 1024**2, 1
            )
