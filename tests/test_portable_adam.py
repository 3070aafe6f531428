"""PortableAdam: torch.optim.Adam's algorithm with a correctly rounded square root."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tavaal.portable_adam import PortableAdam, exact_sqrt


def _train(optimizer_cls, steps: int = 6, **kwargs) -> tuple[list[torch.Tensor], dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    optimizer = optimizer_cls(model.parameters(), lr=1e-2, **kwargs)
    x, y = torch.randn(16, 7), torch.randn(16, 3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()], optimizer.state_dict()


def test_exact_sqrt_is_correctly_rounded():
    values = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 10
    exact = np.sqrt(values.numpy().astype(np.float64)).astype(np.float32)  # innocuous rounding
    assert np.array_equal(exact_sqrt(values).numpy(), exact)
    assert exact_sqrt(values).dtype == torch.float32


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_the_step_is_torch_adams_with_the_exact_square_root(monkeypatch, weight_decay):
    """torch's own single-tensor Adam, made to take the same correctly rounded square root,
    gives the same bits as PortableAdam: the algorithm is torch's, only the sqrt differs."""
    ours, ours_state = _train(PortableAdam, weight_decay=weight_decay)
    monkeypatch.setattr(torch.Tensor, "sqrt", lambda self: exact_sqrt(self))
    theirs, theirs_state = _train(torch.optim.Adam, weight_decay=weight_decay, foreach=False)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    for key, state in ours_state["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], theirs_state["state"][key][name]), name
    ours_groups = [
        {k: v for k, v in g.items() if k != "foreach"} for g in ours_state["param_groups"]
    ]
    theirs_groups = [
        {k: v for k, v in g.items() if k != "foreach"} for g in theirs_state["param_groups"]
    ]
    assert ours_groups == theirs_groups


def test_checkpoints_load_into_either_optimizer():
    """Same state layout as torch.optim.Adam: a resumed job may have written either."""
    params, state = _train(PortableAdam, steps=2)
    torch_adam = torch.optim.Adam([torch.nn.Parameter(p) for p in params], lr=1e-2)
    torch_adam.load_state_dict(state)
    assert torch_adam.state_dict()["state"][0]["step"].item() == 2.0


def test_options_it_does_not_cover_take_torchs_step():
    """amsgrad is torch's own code path: results equal torch.optim.Adam's exactly."""
    ours, _ = _train(PortableAdam, amsgrad=True)
    theirs, _ = _train(torch.optim.Adam, amsgrad=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
