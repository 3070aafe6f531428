"""tavaal.optim: torch optimizers without the torch._dynamo import, same numbers as torch's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from tavaal import optim
from tavaal.optim import build_optimizer, eager_methods

OPTIMIZERS = [
    (torch.optim.Adam, {"lr": 0.05, "weight_decay": 1e-3}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}),
]


@pytest.fixture
def dynamo_not_loaded(monkeypatch):
    # Other tests of this process may have imported torch._dynamo; the replacement is what is
    # tested here, so pretend it is not loaded.
    monkeypatch.setattr(optim, "_dynamo_loaded", lambda: False)


def _train(make, steps: int = 7):
    """A few steps of a small classifier with a MultiStepLR; warnings are errors."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    with warnings.catch_warnings():
        # E.g. "Detected call of `lr_scheduler.step()` before `optimizer.step()`".
        warnings.simplefilter("error")
        optimizer = make(model.parameters())
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3], gamma=0.1)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
        return model, optimizer, scheduler


def _assert_same_run(a, b):
    (model_a, opt_a, sched_a), (model_b, opt_b, sched_b) = a, b
    for (name, pa), (_, pb) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb), name
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    for key, values in state_a["state"].items():
        for name, value in values.items():
            other = state_b["state"][key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert sched_a.state_dict() == sched_b.state_dict()


@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS, ids=lambda v: getattr(v, "__name__", ""))
def test_same_parameters_state_and_schedule_as_torch(dynamo_not_loaded, cls, kwargs):
    assert {"step", "zero_grad", "add_param_group", "state_dict"} <= set(eager_methods(cls))
    ours = _train(lambda params: build_optimizer(cls, params, **kwargs))
    assert type(ours[1]) is cls
    _assert_same_run(ours, _train(lambda params: cls(params, **kwargs)))


def test_state_round_trips_through_load_state_dict(dynamo_not_loaded):
    model, optimizer, _ = _train(lambda p: build_optimizer(torch.optim.Adam, p, lr=0.01))
    restored = build_optimizer(torch.optim.Adam, model.parameters(), lr=0.01)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def test_only_the_instance_changes(dynamo_not_loaded):
    before = dict(vars(torch.optim.Adam)), dict(vars(torch.optim.Optimizer))
    optimizer = build_optimizer(torch.optim.Adam, [torch.zeros(2, requires_grad=True)], lr=0.1)
    assert "step" in vars(optimizer)
    plain = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    assert "step" not in vars(plain) and "zero_grad" not in vars(plain)
    # Optimizer.__init__ hooks the class's step once (torch's own doing); nothing else moves.
    after = dict(vars(torch.optim.Adam)), dict(vars(torch.optim.Optimizer))
    assert {k for k in before[0] if before[0][k] is not after[0].get(k)} <= {"step"}
    assert all(before[1][k] is after[1].get(k) for k in before[1])


def test_unknown_wrappers_fall_back_to_torchs_methods(dynamo_not_loaded, monkeypatch):
    # A torch whose wrappers look different: nothing is replaced, torch's own methods run.
    monkeypatch.setattr(optim, "_use_grad_code", lambda: None)
    monkeypatch.setattr(optim, "_disable_dynamo_code", lambda: None)
    assert eager_methods(torch.optim.Adam) == {}
    fallback = _train(lambda p: build_optimizer(torch.optim.Adam, p, lr=0.05))
    assert "zero_grad" not in vars(fallback[1])
    _assert_same_run(fallback, _train(lambda p: torch.optim.Adam(p, lr=0.05)))


def test_a_wrapper_reading_other_names_is_left_alone(dynamo_not_loaded, monkeypatch):
    # Same code object but a body that reads a name torch 2.14's wrapper does not: unknown.
    monkeypatch.setattr(optim, "_USE_GRAD_NAMES", frozenset({"torch"}))
    assert "step" not in eager_methods(torch.optim.Adam)
    assert "zero_grad" in eager_methods(torch.optim.Adam)


def test_nothing_is_replaced_once_dynamo_is_loaded(monkeypatch):
    monkeypatch.setattr(optim, "_dynamo_loaded", lambda: True)
    assert eager_methods(torch.optim.SGD) == {}


def test_training_with_them_does_not_import_dynamo():
    # A fresh interpreter: construction, steps with a scheduler, zero_grad, state_dict and
    # load_state_dict, as a training job and a VAE/discriminator query do them.
    code = textwrap.dedent(
        """
        import sys, warnings
        warnings.simplefilter("error")
        import torch
        from tavaal.optim import build_optimizer
        model = torch.nn.Linear(4, 2)
        for cls in (torch.optim.Adam, torch.optim.SGD):
            opt = build_optimizer(cls, model.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1])
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                model(torch.randn(8, 4)).sum().backward()
                opt.step()
                sched.step()
            opt.load_state_dict(opt.state_dict())
        print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "sympy"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _private_torch_uses(path) -> list[str]:
    """`torch._x` imports, attribute reads and getattr(..., "_x") on torch objects in a file."""
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def dotted(node) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            return ".".join([node.id, *reversed(parts)])
        return None

    def private(name: str) -> bool:
        return any(p.startswith("_") and not p.startswith("__") for p in name.split("."))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("torch") and private(a.name)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [name for name in names if private(name)]
        elif isinstance(node, ast.Attribute):
            name = dotted(node)
            if name and name.split(".")[0] in {"torch", "optimizer"} and private(name):
                found.append(name)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
        ):
            found.append(f"getattr({dotted(node.args[0])}, {node.args[1].value!r})")
    return found


def test_private_torch_names_are_read_only_in_optim_and_with_a_fallback():
    """Issue 24: nothing in tavaal/ imports a private torch module; the only private torch names
    read anywhere are the two wrappers tavaal.optim recognises, each through getattr with a
    default (so a torch without them falls back to its own methods:
    test_unknown_wrappers_fall_back_to_torchs_methods), on every torch CI installs."""
    from pathlib import Path

    package = Path(optim.__file__).parent
    uses = {
        str(path.relative_to(package)): found
        for path in sorted(package.rglob("*.py"))
        if (found := _private_torch_uses(path))
    }
    assert uses == {
        "optim.py": [
            "getattr(optimizer, '_use_grad_for_differentiable')",
            "getattr(torch, '_disable_dynamo')",
        ]
    }
    # And torch still has them (else the saving is gone silently: test_job_startup shows it too).
    assert optim._use_grad_code() is not None and optim._disable_dynamo_code() is not None


def test_the_private_name_scan_sees_imports_attributes_and_getattr(tmp_path):
    source = tmp_path / "uses.py"
    source.write_text(
        "import torch._dynamo\nfrom torch._C import _foo\nimport torch\n"
        "x = torch.nn._reduction\ny = getattr(torch, '_private', None)\nz = torch.__version__\n"
    )
    assert _private_torch_uses(source) == [
        "torch._dynamo",
        "torch._C._foo",
        "torch.nn._reduction",
        "getattr(torch, '_private')",
    ]
