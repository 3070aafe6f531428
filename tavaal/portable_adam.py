"""Adam whose square root is correctly rounded on the CPU, so that its updates are the same bits
on every x86-64 CPU (tavaal.cpu_kernels pins the other kernels).

torch's CPU `sqrt` (torch 2.14, float32 and float64) is not correctly rounded: on an AMD EPYC
about 15% of float32 results differ from the exact square root in the last bit, and which ones
depends on the CPU's vendor (an AMD EPYC and qemu's emulated Intel Haswell disagree, whatever
torch's CPU capability or MKL's reproducibility mode). Adam's denominator is the only square
root in a training step, so `torch.optim.Adam` alone made a CPU run's VAE, discriminator and
Adam-trained task learners differ between Intel and AMD machines.

`PortableAdam` is `torch.optim.Adam` (same defaults, state and checkpoint layout) whose step on
CPU tensors is the algorithm of torch's single-tensor implementation — the one torch itself uses
on the CPU — with the square root taken by numpy, whose `sqrt` is the IEEE-754 instruction,
correctly rounded on every x86-64 CPU. Options that path does not cover here (`amsgrad`,
`maximize`, `capturable`, `differentiable`, decoupled weight decay, complex or sparse
parameters) and parameters on other devices take torch's own step.
"""

from __future__ import annotations

import numpy as np
import torch


def exact_sqrt(values: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of a CPU tensor (a new tensor of the same dtype)."""
    return torch.from_numpy(np.sqrt(values.detach().contiguous().numpy()))


class PortableAdam(torch.optim.Adam):
    """torch.optim.Adam with a correctly rounded square root for CPU parameters."""

    def _covered(self) -> bool:
        """Whether every parameter with a gradient takes the portable step."""
        torch_only = ("amsgrad", "maximize", "capturable", "differentiable", "foreach", "fused")
        for group in self.param_groups:
            if any(group.get(option) for option in torch_only):
                return False
            if group.get("decoupled_weight_decay") or isinstance(group["lr"], torch.Tensor):
                return False
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.device.type != "cpu" or param.is_complex() or param.grad.is_sparse:
                    return False
        return True

    def step(self, closure=None):
        if not self._covered():
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        for param in group["params"]:
            if param.grad is None:
                continue
            state = self.state[param]
            if not state:
                # The layout torch.optim.Adam writes, so checkpoints load in either.
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t += 1
            grad = param.grad
            if weight_decay != 0:
                grad = grad.add(param, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            step_size = lr / (1 - beta1**step)
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exact_sqrt(exp_avg_sq) / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
