"""Stochastic weight averaging (Izmailov et al., UAI 2018) of a task learner.

Part of the strong training recipe (`train.swa_start`), after Munjal et al. (CVPR 2022), who
regularise every method's task learner with RandAugment (`tavaal.randaugment`) and SWA. From
epoch `swa_start` on, training runs at the constant learning rate `swa_lr`, and the weights at
the end of each later epoch enter an equal-weight running mean. The kept model is that mean,
with its batch-norm statistics recomputed by one pass over the labeled set (SWA §3.2): the
averaged weights never saw the running statistics of any single one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


class WeightAverage:
    """Equal-weight running mean of a module's floating-point parameters."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    def update(self, module: nn.Module) -> None:
        self.count += 1
        with torch.no_grad():
            for name, param in module.named_parameters():
                if name not in self.mean:
                    self.mean[name] = param.detach().clone()
                else:
                    # mean_k = mean_{k-1} + (w - mean_{k-1}) / k
                    self.mean[name].add_(param.detach() - self.mean[name], alpha=1 / self.count)

    def copy_to(self, module: nn.Module) -> None:
        """Replace the module's parameters by the mean (no-op before the first update)."""
        if not self.count:
            return
        with torch.no_grad():
            for name, param in module.named_parameters():
                param.copy_(self.mean[name])

    def state(self) -> dict:
        return {"count": self.count, "mean": dict(self.mean)}

    @classmethod
    def from_state(cls, state: dict) -> WeightAverage:
        average = cls()
        average.count = int(state["count"])
        average.mean = {name: tensor.clone() for name, tensor in state["mean"].items()}
        return average


def recompute_batch_norm(module: nn.Module, batches: Iterable[torch.Tensor], forward: Callable):
    """Batch-norm running statistics as the plain average over `batches` (each already the
    model's input), in order: momentum None for the pass, running statistics reset first.
    Dropout stays off (evaluation mode elsewhere), so no random number is drawn; `forward`
    runs the module on one batch. A module without batch norm is left unchanged."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    norms = [m for m in module.modules() if isinstance(m, kinds)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    was_training = module.training
    module.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for inputs in batches:
            forward(inputs)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    module.train(was_training)
