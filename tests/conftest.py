"""Shared test settings."""

# First: pins the CPU kernels before numpy is imported (tavaal.cpu_kernels), so that the
# fingerprint tests hold on any x86-64 CPU.
import tavaal  # noqa: F401, I001
import torch

# Tiny tensors on a loaded 2-core machine run far faster single-threaded, and results are
# reproducible either way (tests compare runs made in the same process settings).
torch.set_num_threads(1)
