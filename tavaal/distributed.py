"""Data-parallel training inside one job (`train.processes` > 1), one process per GPU.

How the processes start: the job's own process (one SLURM task holding the job's GPUs, or a
local run) forks `train.processes` workers and only supervises them (`run_processes`). They
meet through a TCP store the supervisor serves on 127.0.0.1 (a free port), so one job is one
node; the backend is NCCL on CUDA and gloo on CPU. A worker that raises ends the others and the
job with its traceback (the first to fail: the others' errors follow from it); a worker killed
by a signal ends it too: the supervisor never waits on a collective, so nothing hangs. The
workers die with the job's process, however it ends.

What is computed is the single process's arithmetic, split by rows (the equality promise,
docs/cluster.md, "Several GPUs per training job"):

- every rank draws the same seeded global batch order and augmentation for the global batch,
  then keeps its contiguous share of rows (`DataParallel.shard`);
- a rank's loss is its rows' summed loss over the global batch size, and the gradients are
  summed over the ranks (`DataParallel.sum_gradients`): the global batch's mean-loss gradient;
- batch norm normalises with the global batch's statistics (`_GlobalBatchNorm`, all-reduces
  that carry gradients), and dropout draws the global batch's mask and keeps the rank's rows
  (`_GlobalMaskDropout`; on a CPU the very mask one process draws, on CUDA one from the same
  distribution, as CUDA's fused dropout kernel draws differently);
- the ranker's pair loss (`tavaal.losses`) is computed by every rank on the whole global batch's
  predicted and true losses, gathered (`DataParallel.gather_rows`).

Every rank thus holds the same weights after every step, up to the order of floating-point sums.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from tavaal.errors import ConfigError

# Store keys of the first failure: it is the cause, later ones follow from it (a peer gone).
FAILURES_KEY = "failures"
FIRST_ERROR_KEY = "first_error"
# prctl(2) option: the signal a process gets when its parent ends (Linux).
PR_SET_PDEATHSIG = 1
# Longest wait of a collective for a rank that has not arrived: far beyond any step, short
# enough that a rank stuck outside torch (a hung file system) ends the job the same day.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass
class DataParallel:
    """This process's place among the job's data-parallel processes."""

    rank: int
    size: int
    device: torch.device
    # (first row, size) of the current global batch's share of this rank (`begin_batch`):
    # what the global batch norm and dropout of its forward pass need.
    share: tuple[int, int] = field(default=(0, 0))

    @property
    def writes(self) -> bool:
        """Rank 0 alone writes files and log lines."""
        return self.rank == 0

    def _start(self, total: int) -> int:
        # torch.tensor_split's sizes: the first total % size ranks hold one row more.
        base, extra = divmod(total, self.size)
        return self.rank * base + min(self.rank, extra)

    def shard(self, global_rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (sizes differ by at most one row)."""
        return torch.tensor_split(global_rows, self.size)[self.rank]

    def begin_batch(self, global_rows: torch.Tensor) -> tuple[int, int]:
        """Record (and return) where this rank's share of `global_rows` starts, and their
        number, for the forward pass about to run on the share."""
        self.share = (self._start(len(global_rows)), len(global_rows))
        return self.share

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's share of the current global batch, in global order (the rows of
        `begin_batch`'s batch); the gradient reaches this rank's rows. For the ranker's loss,
        which pairs samples across the whole global batch (`tavaal.losses`)."""
        return _GatherRows.apply(rows, self)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place (no gradient); returns it."""
        dist.all_reduce(tensor)
        return tensor

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace every gradient by its sum over the ranks, in one flat all-reduce. A gradient
        that is None is None on every rank (the same graph), and stays None."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def globalise(self, model: nn.Module) -> None:
        """Make the model's batch norms and dropouts act on the global batch (see the module
        docstring); their parameters, buffers and state-dict keys stay as they are."""
        for module in model.modules():
            if type(module) in _GLOBAL_BATCH_NORM:
                module.__class__ = _GLOBAL_BATCH_NORM[type(module)]
                module.parallel = self
            elif type(module) is nn.Dropout:
                module.__class__ = _GlobalMaskDropout
                module.parallel = self


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks, with its gradient: each rank's input feeds every
    rank's output, so its gradient is the sum of the output gradients over the ranks. (torch's
    own, torch.distributed.nn.functional.all_reduce, is deprecated for a private module.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class _GatherRows(torch.autograd.Function):
    """All ranks' rows of the global batch (shares of unequal sizes: padded to the largest for
    the collective, then trimmed). Every rank computes the same loss from the gathered rows,
    so the gradient of its own rows is its slice of the gathered gradient, no collective."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, parallel: DataParallel) -> torch.Tensor:
        start, total = parallel.share
        base, extra = divmod(total, parallel.size)
        sizes = [base + (rank < extra) for rank in range(parallel.size)]
        padded = rows.new_zeros((max(sizes), *rows.shape[1:]))
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.rows = (start, len(rows))
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        start, count = ctx.rows
        return grad[start : start + count], None


def _all_reduce_with_gradient(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(tensor)


class _GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training-mode statistics are the global batch's: per-channel sums of
    every rank, then of squared deviations from the global mean (two passes, as accurate as
    one process's). Evaluation mode is the plain module's (running statistics)."""

    parallel: DataParallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
        count = self.parallel.sum_(count)
        mean = _all_reduce_with_gradient(x.sum(dims)) / count
        centred = x - mean.reshape(shape)
        var = _all_reduce_with_gradient((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.detach() * momentum)
        return out


class _GlobalBatchNorm1d(_GlobalBatchNorm, nn.BatchNorm1d):
    pass


class _GlobalBatchNorm2d(_GlobalBatchNorm, nn.BatchNorm2d):
    pass


_GLOBAL_BATCH_NORM = {nn.BatchNorm1d: _GlobalBatchNorm1d, nn.BatchNorm2d: _GlobalBatchNorm2d}


class _GlobalMaskDropout(nn.Dropout):
    """Dropout that draws the mask of the whole global batch from the (same on every rank)
    global generator and keeps the rank's rows, so the generator advances as in one process.
    On a CPU the mask is the one `F.dropout` draws (Bernoulli of keep probability, scaled)."""

    parallel: DataParallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return super().forward(x)
        start, total = self.parallel.share
        keep = 1.0 - self.p
        mask = torch.empty((total, *x.shape[1:]), dtype=x.dtype, device=x.device)
        mask.bernoulli_(keep).div_(keep)
        return x * mask[start : start + len(x)]


def supports(task: str) -> bool:
    """Whether data-parallel training computes one process's training on a dataset of `task`:
    classification, not segmentation, whose loss is a mean over each batch's labeled pixels
    (not over its images, which the ranks' shares would weight)."""
    return task == "classification"


def check_supported(processes: int, where: str, task: str) -> None:
    """A ConfigError naming `where`.train.processes unless `supports` the task (the workflow
    checks before any job; the training job checks again)."""
    if processes > 1 and not supports(task):
        raise ConfigError(
            f"{where}.train.processes: {processes} processes are supported for classification; "
            f"a {task} loss is a mean over labeled pixels, not over images: set 1"
        )


def run_processes(
    processes: int,
    work: Callable[[DataParallel], object],
    device: str,
    threads: int = 1,
) -> None:
    """Run `work(parallel)` in `processes` forked workers and wait for all of them; a failing
    worker ends the others and raises here with its traceback.

    `device`: the config's `device`; "auto" and "cuda" put rank r on GPU r of the job's
    visible GPUs (NCCL), "cpu" every rank on the CPU (gloo). The workers decide, as only they
    may initialise CUDA (a forked child cannot use CUDA its parent initialised).
    `threads`: the job's CPUs, shared out among the workers for image decoding."""
    import torch.multiprocessing as mp

    if torch.cuda.is_initialized():
        raise RuntimeError(
            "train.processes > 1: this process has used CUDA already, and forked training "
            "processes cannot; train in a process of its own (a workflow job, `tavaal train`)"
        )
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    decode_workers = str(max(1, threads // processes))
    try:
        mp.start_processes(
            _worker,
            args=(processes, store.port, str(device), decode_workers, work, os.getpid()),
            nprocs=processes,
            join=True,
            start_method="fork",
        )
    except mp.ProcessExitedException as exc:  # killed, or ended without a Python error
        killed = f" (signal {exc.signal_name})" if exc.signal_name else ""
        raise RuntimeError(
            f"data-parallel training: rank {exc.error_index} of {processes} exited with "
            f"status {exc.exit_code}{killed}"
        ) from None
    except mp.ProcessRaisedException as exc:
        # Whichever rank torch reports, the first to fail recorded its error in the store.
        rank, error = str(exc.error_index), str(exc).strip()
        if store.check([FIRST_ERROR_KEY]):
            rank, error = store.get(FIRST_ERROR_KEY).decode().split("\n", 1)
        raise RuntimeError(
            f"data-parallel training: rank {rank} of {processes} failed:\n{error}"
        ) from None


def _end_with(supervisor: int) -> None:
    """Have the kernel kill this worker when the job's process ends, however it ends (SIGKILL
    at a time limit runs no handler), so that no worker outlives its job holding a GPU. torch
    asks for SIGINT, which a worker busy in C++ (a kernel, a blocked collective) does not act
    on. Linux only; elsewhere a worker ends when a collective finds its peers gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it ended before the request above
        os._exit(1)


def _worker(
    rank: int,
    size: int,
    port: int,
    device: str,
    decode_workers: str,
    work: Callable[[DataParallel], object],
    supervisor: int,
) -> None:
    from tavaal.data.image_files import WORKERS_ENV

    _end_with(supervisor)
    os.environ[WORKERS_ENV] = decode_workers
    # One intra-op thread, the setting the determinism promise is made for (and safe in a
    # forked child of a process that may have used OpenMP).
    torch.set_num_threads(1)
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        visible = torch.cuda.device_count()
        if visible < size:
            raise ConfigError(
                f"train.processes: {size} processes need {size} GPUs, this job sees {visible}"
            )
        place = torch.device("cuda", rank)
        torch.cuda.set_device(place)
        backend = "nccl"
    else:
        place, backend = torch.device("cpu"), "gloo"
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=size, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        work(DataParallel(rank=rank, size=size, device=place))
    except BaseException:
        # Recorded before this process ends and its peers fail for want of it.
        if store.add(FAILURES_KEY, 1) == 1:
            store.set(FIRST_ERROR_KEY, f"{rank}\n{traceback.format_exc()}")
        raise
    dist.destroy_process_group()
