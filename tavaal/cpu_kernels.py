"""Pin the CPU kernels that torch, oneDNN, MKL, numpy and OpenBLAS dispatch to, so that a CPU run
gives bit-identical results on x86-64 CPUs of different instruction sets and vendors.

Each of these libraries picks, at run time, the fastest code path the CPU offers (AVX-512 on
some machines, AVX2 on others, vendor-specific paths in MKL), and the paths round differently:
on an AVX-512 machine 26 of 31 index-file fingerprints made on an AVX2 one differed. Two levels:

- ``x86-64-avx2`` (any CPU with AVX2 and FMA, i.e. x86-64-v3: every x86-64 server CPU since
  2013-2015): torch's ATen kernels capped at AVX2, oneDNN at AVX2, MKL in its conditional
  numerical reproducibility mode ``COMPATIBLE`` (the one mode that gives the same bits on Intel
  and AMD: measured, AVX2 and AVX2,STRICT do not for `exp` and `addmm`), numpy's AVX-512
  dispatch off, OpenBLAS on its Haswell kernels;
- ``x86-64-baseline`` (older CPUs with AVX, which torch's wheels need): torch's default kernels,
  oneDNN at SSE4.1, numpy's AVX2 dispatch off too, OpenBLAS on its Nehalem kernels.

The environment variables must be set before the libraries read them: numpy's at its import,
the others at their first computation. `pin` runs when `tavaal` is imported (Snakemake imports it
while reading the Snakefile, so every job inherits the settings; the `tavaal` command, the tests'
conftest and library users import it first). ``TAVAAL_CPU_KERNELS=native`` leaves every library
to choose (fastest, not portable); ``avx2`` or ``baseline`` forces a level (``baseline`` runs
on any x86-64 CPU, which is how both sets of test fingerprints are made on one machine).
This module imports neither torch nor numpy.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

KERNELS_ENV = "TAVAAL_CPU_KERNELS"
AVX2 = "x86-64-avx2"
BASELINE = "x86-64-baseline"
NATIVE = "native"

# The variables each level sets, and what torch then reports as its CPU capability.
_SETTINGS: dict[str, dict[str, str]] = {
    AVX2: {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        "OPENBLAS_CORETYPE": "Haswell",
    },
    BASELINE: {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_CBWR": "COMPATIBLE",
        "OPENBLAS_CORETYPE": "Nehalem",
    },
}
TORCH_CAPABILITY = {AVX2: "AVX2", BASELINE: "DEFAULT"}

# numpy's dispatch targets above each level, which NPY_DISABLE_CPU_FEATURES turns off. numpy 2.3
# renamed them by x86-64 level, and warns about a name that is not one of its targets.
_NUMPY_ABOVE = {
    (AVX2, True): "X86_V4 AVX512_ICL AVX512_SPR",
    (BASELINE, True): "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    (AVX2, False): "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR",
    (BASELINE, False): "AVX AVX2 FMA3 F16C AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX "
    "AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
}


def _numpy_names_targets_by_level() -> bool:
    """Whether the installed numpy is 2.3 or newer (read from its metadata, not imported)."""
    try:
        major, minor = (int(part) for part in version("numpy").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (2, 3)


class CpuKernelsError(ValueError):
    """A bad TAVAAL_CPU_KERNELS value."""


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def detected_level() -> str:
    """The highest pinned level this CPU runs: AVX2 needs avx2 and fma; other x86-64 CPUs get the
    baseline; other machines (and x86-64 systems without /proc/cpuinfo) run natively.

    torch trusts ATEN_CPU_CAPABILITY without checking the CPU, so the flags must be the CPU's
    own: true on hardware and in virtual machines; under a user-mode emulator (qemu-user shows
    the host's /proc/cpuinfo) set TAVAAL_CPU_KERNELS instead."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return NATIVE
    flags = _cpu_flags()
    if not flags:
        return NATIVE
    return AVX2 if {"avx2", "fma"} <= flags else BASELINE


def requested_level() -> str:
    """The level `pin` applies: TAVAAL_CPU_KERNELS if set, else this CPU's `detected_level`."""
    value = os.environ.get(KERNELS_ENV, "").strip().lower()
    if value in ("", "portable", "auto"):
        return detected_level()
    aliases = {"avx2": AVX2, AVX2: AVX2, "baseline": BASELINE, BASELINE: BASELINE, NATIVE: NATIVE}
    if value not in aliases:
        raise CpuKernelsError(
            f"{KERNELS_ENV}={value!r}: expected portable (the default), avx2, baseline or native"
        )
    level = aliases[value]
    if level == AVX2 and detected_level() == BASELINE:
        raise CpuKernelsError(f"{KERNELS_ENV}=avx2: this CPU has no AVX2/FMA; use baseline")
    return level


def pin() -> str:
    """Set the environment of `requested_level` for this process and its children; returns the
    level. Values already set are replaced (a portable run must not inherit a faster path)."""
    level = requested_level()
    for key, value in settings(level).items():
        os.environ[key] = value
    return level


def settings(level: str) -> dict[str, str]:
    """The environment variables `level` sets (empty for native)."""
    if level not in _SETTINGS:
        return {}
    numpy_above = _NUMPY_ABOVE[(level, _numpy_names_targets_by_level())]
    return {**_SETTINGS[level], "NPY_DISABLE_CPU_FEATURES": numpy_above}
