"""The CPU kernels are pinned (tavaal.cpu_kernels): the same bits on any x86-64 CPU of a level."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tavaal
from tavaal import cpu_kernels
from tavaal.cpu_kernels import AVX2, BASELINE, KERNELS_ENV, NATIVE, CpuKernelsError

REPO = Path(__file__).resolve().parent.parent
pinned = pytest.mark.skipif(
    tavaal.CPU_KERNELS == NATIVE, reason="CPU kernels not pinned on this machine"
)

# A few kernels of each library a run uses: MKL's gemm (linear layers) and vector math (exp),
# oneDNN's convolution, ATen's reductions and softmax, numpy's exp; and BADGE's float64 seeding,
# whose distances once went through torch's float64 sqrt, which rounds differently on an
# AVX-512 Xeon and an emulated Haswell at the same level.
PROBE = """
import hashlib, json
import tavaal
import numpy as np
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
h = lambda t: hashlib.sha256(t.detach().numpy().tobytes()).hexdigest()[:16]
a, b = torch.randn(257, 129), torch.randn(129, 63)
x, w = torch.randn(8, 3, 28, 28), torch.randn(16, 3, 3, 3)
linear = torch.nn.Linear(129, 63)
v = np.random.default_rng(0).normal(size=4099)
from tavaal.portable_adam import PortableAdam
adam = PortableAdam(linear.parameters(), lr=1e-2)
for _ in range(3):
    adam.zero_grad()
    linear(a).square().mean().backward()
    adam.step()
from tavaal.diversity import gradient_embedding_residual, kmeans_pp_seeding
g = np.random.default_rng(1)
residual = gradient_embedding_residual(g.normal(size=(200, 10)).astype(np.float32))
features = torch.from_numpy(g.normal(size=(200, 64)).astype(np.float32))
seeding = kmeans_pp_seeding(torch.from_numpy(residual), features, 20, np.random.default_rng(2))
print(json.dumps({
    "level": tavaal.CPU_KERNELS,
    "capability": torch.backends.cpu.get_cpu_capability(),
    "mm": h(a @ b), "linear": h(linear(a)), "exp": h(a.exp()),
    "conv": h(torch.nn.functional.conv2d(x, w, padding=1)),
    "sum": h(a.sum(1)), "softmax": h(a.softmax(1)),
    "numpy_exp": hashlib.sha256(np.exp(v).tobytes()).hexdigest()[:16],
    "adam": h(torch.cat([p.flatten() for p in linear.parameters()])),
    "badge": hashlib.sha256(
        seeding.final_distance.tobytes() + seeding.gradient_norm.tobytes()
    ).hexdigest()[:16],
}))
"""


def _probe(env: dict[str, str], prefix: list[str] | None = None) -> dict:
    out = subprocess.run(
        [*(prefix or []), sys.executable, "-c", PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pinned
def test_this_process_runs_the_pinned_kernels():
    """The tests' own process (conftest imports tavaal first): torch dispatches to the level's
    capability and numpy's dispatch above it is off, so fingerprints mean the same everywhere."""
    assert (
        torch.backends.cpu.get_cpu_capability() == cpu_kernels.TORCH_CAPABILITY[tavaal.CPU_KERNELS]
    )
    umath = np._core._multiarray_umath
    above = {"X86_V4", "AVX512_ICL", "AVX512_SPR", "AVX512_SKX"}
    if tavaal.CPU_KERNELS == BASELINE:
        above |= {"X86_V3", "AVX2", "FMA3"}
    dispatched_above = above & set(umath.__cpu_dispatch__)
    assert dispatched_above, "numpy dispatches to none of the targets this test knows"
    assert not any(umath.__cpu_features__[name] for name in dispatched_above)
    for key, value in cpu_kernels.settings(tavaal.CPU_KERNELS).items():
        assert os.environ[key] == value


def test_levels_and_their_errors(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "detected_level", lambda: AVX2)
    for value, level in [
        ("", AVX2),
        ("portable", AVX2),
        ("avx2", AVX2),
        ("Baseline", BASELINE),
        ("native", NATIVE),
        (BASELINE, BASELINE),
    ]:
        monkeypatch.setenv(KERNELS_ENV, value)
        assert cpu_kernels.requested_level() == level
    monkeypatch.setenv(KERNELS_ENV, "avx512")
    with pytest.raises(CpuKernelsError, match=r"TAVAAL_CPU_KERNELS='avx512': expected portable"):
        cpu_kernels.requested_level()
    monkeypatch.setattr(cpu_kernels, "detected_level", lambda: BASELINE)
    monkeypatch.setenv(KERNELS_ENV, "avx2")
    with pytest.raises(CpuKernelsError, match="no AVX2/FMA; use baseline"):
        cpu_kernels.requested_level()
    assert cpu_kernels.settings(NATIVE) == {}
    assert cpu_kernels.settings(AVX2)["MKL_CBWR"] == "COMPATIBLE"


def test_detected_level_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(cpu_kernels.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_kernels, "_cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
    assert cpu_kernels.detected_level() == AVX2
    monkeypatch.setattr(cpu_kernels, "_cpu_flags", lambda: {"sse4_2", "avx"})
    assert cpu_kernels.detected_level() == BASELINE
    monkeypatch.setattr(cpu_kernels.platform, "machine", lambda: "aarch64")
    assert cpu_kernels.detected_level() == NATIVE


@pinned
def test_an_inherited_faster_setting_is_overridden():
    """A job must not inherit a faster, machine-specific path from its parent's environment."""
    faster = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "ALL"}
    assert _probe(faster) == _probe({})


@pinned
def test_baseline_kernels_differ_from_avx2_kernels():
    """The levels are real: forcing the baseline changes torch's capability and some bits (so
    each level needs its own fingerprints)."""
    if tavaal.CPU_KERNELS != AVX2:
        pytest.skip("needs a CPU with AVX2")
    avx2, baseline = _probe({}), _probe({KERNELS_ENV: "baseline"})
    assert (avx2["capability"], baseline["capability"]) == ("AVX2", "DEFAULT")
    assert baseline["level"] == BASELINE
    assert any(avx2[k] != baseline[k] for k in ("mm", "linear", "conv", "exp"))


@pytest.mark.slow
def test_emulated_cpus_of_other_vendors_and_levels_give_the_same_bits():
    """Two instruction-set caps on one machine: qemu's emulated Intel Haswell (AVX2, FMA) gives
    the bits of this CPU at the AVX2 level (without the pin, MKL's gemm and exp differ between an
    AMD CPU and the emulated Intel one, and so does torch's sqrt, which PortableAdam avoids:
    measured), and its SandyBridge (AVX, no AVX2 or FMA) gives at the baseline level the bits
    this CPU gives when forced to the baseline. (qemu-user shows the host's /proc/cpuinfo, so
    under emulation the level is set, not detected; torch needs AVX, so CPUs before SandyBridge
    cannot run it at all.)"""
    if shutil.which("qemu-x86_64") is None:
        if os.environ.get("TAVAAL_REQUIRE_QEMU", "").strip().lower() not in ("", "0", "false"):
            pytest.fail("TAVAAL_REQUIRE_QEMU is set but qemu-x86_64 is missing", pytrace=False)
        pytest.skip("needs qemu-user (Debian: apt-get install qemu-user)")
    if tavaal.CPU_KERNELS != AVX2:
        pytest.skip("needs a CPU with AVX2")
    native, haswell = _probe({}), _probe({}, ["qemu-x86_64", "-cpu", "Haswell"])
    assert haswell == native
    baseline = _probe({KERNELS_ENV: "baseline"})
    sandy_bridge = _probe({KERNELS_ENV: "baseline"}, ["qemu-x86_64", "-cpu", "SandyBridge"])
    assert sandy_bridge["level"] == BASELINE
    # numpy's float64 exp at the baseline is glibc's, which picks an FMA variant where the CPU
    # has FMA: its last bits may differ (docs/determinism.md); every torch kernel is equal.
    del sandy_bridge["numpy_exp"], baseline["numpy_exp"]
    assert sandy_bridge == baseline
