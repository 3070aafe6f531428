"""tavaal: pool-based deep active learning (VAAL, TA-VAAL and baselines)."""

from tavaal.cpu_kernels import pin as _pin_cpu_kernels

__version__ = "0.1.0"

# Before torch or numpy compute anything (numpy reads its setting at import): results on the CPU
# are then the same bits on any x86-64 CPU of the same level (tavaal.cpu_kernels).
CPU_KERNELS = _pin_cpu_kernels()
