"""torch.optim optimizers that do not import torch._dynamo: same updates, ~1.5 s less per job.

In eager mode (no torch.compile anywhere) every public method of a torch optimizer imports
`torch._dynamo` the first time it runs: `Optimizer.__init__` (through `add_param_group`),
`zero_grad`, `state_dict` and `load_state_dict` are wrapped by `torch._disable_dynamo`, which
imports it to build its "don't trace this" wrapper, and `step` by
`torch.optim.optimizer._use_grad_for_differentiable`, which imports it for two
`torch._dynamo.graph_break()` calls. Both wrappers only matter while dynamo traces the call;
eagerly they call the wrapped function (`step` with autograd off unless the optimizer is
`differentiable`). The import itself, with the sympy and torch.fx it pulls in, costs every
workflow job that trains something (every train job and every VAAL/TA-VAAL query) about 1.5
CPU-seconds, a third of its fixed cost, and a longer interpreter shutdown.

`build_optimizer(torch.optim.Adam, params, lr=...)` returns an ordinary instance of that class
whose wrapped methods are replaced, on the instance only, by the functions the wrappers call:

- a `_disable_dynamo`-wrapped method by the function it wraps;
- `step` by `Optimizer.profile_hook_step` (the step hooks and profiler label every optimizer
  gets) around the unwrapped step, run with autograd set as `_use_grad` sets it.

The arithmetic is the optimizer's own code, so parameters and state are bit-for-bit those of
`torch.optim.Adam(params, lr=...)`; `step` stays an attribute that an LR scheduler wraps to
track its calls, so schedulers see `optimizer.step()` calls as usual.

Robustness: each wrapper is recognised by identity of its code object with the one torch
builds now, and its body must reference only the names known from torch 2.14 (the version
pinned in pyproject.toml). A wrapper that is missing, different or unknown is left as torch
made it, which only costs the import again, never a different result. When `torch._dynamo` is
already imported (a process that compiles), nothing is replaced: there is nothing to save, and
dynamo's wrappers keep their meaning for compiled code. tests/test_optim.py checks that a
training job does not import torch._dynamo, so a torch upgrade that changes a wrapper shows.
``TAVAAL_FAST_OPTIMIZERS=0`` turns the replacement off (torch's own methods, the import again):
benchmarks/fast_paths.py measures the saving with it, and tests/test_job_startup.py checks that
the results do not change, on every supported torch.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.optim import Optimizer

OptimizerT = TypeVar("OptimizerT", bound=Optimizer)
FAST_OPTIMIZERS_ENV = "TAVAAL_FAST_OPTIMIZERS"

# Every name the eager-irrelevant wrappers of torch 2.14 reference; a wrapper whose code reads
# any other name does something we do not know and is left in place.
_USE_GRAD_NAMES = frozenset(
    {
        "torch",
        "torch._dynamo",
        "_dynamo",
        "graph_break",
        "cast",
        "Optimizer",
        "is_grad_enabled",
        "set_grad_enabled",
        "defaults",
    }
)
_DISABLE_DYNAMO_NAMES = frozenset(
    {"torch", "torch._dynamo", "_dynamo", "getattr", "disable", "__dynamo_disable"}
)


def _dynamo_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def _probe(make: Callable[[Callable], Callable] | None) -> types.CodeType | None:
    """The code object of the wrapper `make` builds (None if torch no longer has it)."""
    if make is None:
        return None
    try:
        return make(lambda *args, **kwargs: None).__code__
    except Exception:
        return None


def _use_grad_code() -> types.CodeType | None:
    from torch.optim import optimizer

    return _probe(getattr(optimizer, "_use_grad_for_differentiable", None))


def _disable_dynamo_code() -> types.CodeType | None:
    return _probe(getattr(torch, "_disable_dynamo", None))


def _profile_hook_code() -> types.CodeType | None:
    return _probe(getattr(Optimizer, "profile_hook_step", None))


def _cell(wrapper: Any, name: str) -> Callable | None:
    """The function in closure cell `name` of `wrapper` (what the wrapper calls), or None."""
    try:
        inner = wrapper.__closure__[wrapper.__code__.co_freevars.index(name)].cell_contents
    except (AttributeError, ValueError, IndexError, TypeError):
        return None
    return inner if callable(inner) else None


def _wrapped(wrapper: Any, code: types.CodeType | None, names: frozenset, cell: str):
    """The function `wrapper` wraps (its closure cell `cell`), if `wrapper` is the known one."""
    wrapper_code = getattr(wrapper, "__code__", None)
    if code is None or wrapper_code is not code or not set(code.co_names) <= names:
        return None
    return _cell(wrapper, cell)


def _raw_step(cls: type[Optimizer]) -> Callable | None:
    """The step function below `cls.step`'s `_use_grad` wrapper, through the profiler hook that
    `Optimizer.__init__` may already have put around it; None if the chain is not that."""
    use_grad, profile_hook = _use_grad_code(), _profile_hook_code()
    layer = getattr(cls, "step", None)
    for _ in range(2):
        if layer is None:
            return None
        raw = _wrapped(layer, use_grad, _USE_GRAD_NAMES, "func")
        if raw is not None:
            return raw
        if profile_hook is None or getattr(layer, "__code__", None) is not profile_hook:
            return None
        layer = _cell(layer, "func")
    return None


def _eager_step(raw: Callable) -> Callable:
    """`_use_grad` without its `torch._dynamo.graph_break()` calls, inside the step hooks."""

    @functools.wraps(raw)
    def step(self, *args, **kwargs):
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return raw(self, *args, **kwargs)
        finally:
            torch.set_grad_enabled(previous)

    return Optimizer.profile_hook_step(step)


def eager_methods(cls: type[Optimizer]) -> dict[str, Callable]:
    """Name -> function to bind on an instance of `cls` in place of its dynamo-importing method.

    Empty when `torch._dynamo` is already imported or TAVAAL_FAST_OPTIMIZERS=0; missing entries
    for wrappers not recognised.
    """
    if _dynamo_loaded() or os.environ.get(FAST_OPTIMIZERS_ENV, "1") == "0":
        return {}
    disable_code = _disable_dynamo_code()
    methods: dict[str, Callable] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            inner = _wrapped(value, disable_code, _DISABLE_DYNAMO_NAMES, "fn")
            if inner is not None:
                methods[name] = inner
            elif name in methods:
                # Overridden further down the hierarchy by something else: keep that.
                del methods[name]
    raw = _raw_step(cls)
    if raw is not None:
        methods["step"] = _eager_step(raw)
    return methods


def build_optimizer(cls: type[OptimizerT], params, **kwargs) -> OptimizerT:
    """`cls(params, **kwargs)`, an instance of `cls`, whose methods do not import torch._dynamo.

    Create LR schedulers after this (as always): they wrap the instance's `step`.
    """
    methods = eager_methods(cls)
    optimizer = cls.__new__(cls)
    # Bound on the instance before __init__, which calls add_param_group.
    for name, function in methods.items():
        setattr(optimizer, name, types.MethodType(function, optimizer))
    cls.__init__(optimizer, params, **kwargs)
    return optimizer
