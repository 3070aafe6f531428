"""Shared test settings."""

import torch

# Tiny tensors on a loaded 2-core machine run far faster single-threaded, and results are
# reproducible either way (tests compare runs made in the same process settings).
torch.set_num_threads(1)
