"""CPU time of the pinned kernel levels (tavaal.cpu_kernels) against each library's own choice.

One workload, run in a fresh single-threaded process per level and repetition: training steps
of the Fashion-MNIST CPU preset's task learner (`small_cnn`, 28x28, batch 32, Adam) and of its
VAE/discriminator (conv VAE, 16 base channels, latent 32; batch 64), as the workflow's jobs run
them. `native` uses torch.optim.Adam (what the jobs used before the pin); the pinned levels use
PortableAdam, which the jobs use now. Prints a Markdown table: median CPU seconds over the
repetitions and the ratio to native.

    python benchmarks/cpu_kernels_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKLOAD = """
import json, os, time
import tavaal
import torch
from tavaal.models import build_discriminator, build_task_model, build_vae
from tavaal.portable_adam import PortableAdam

torch.set_num_threads(1)
torch.manual_seed(0)
adam = torch.optim.Adam if tavaal.CPU_KERNELS == "native" else PortableAdam
learner = build_task_model("small_cnn", (1, 28, 28), 10)
vae = build_vae((1, 28, 28), 32, base_channels=16)
disc = build_discriminator(32)
opt_l, opt_v, opt_d = (adam(m.parameters(), lr=1e-3) for m in (learner, vae, disc))
x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
xv = torch.rand(64, 1, 28, 28)
start = time.process_time()
for _ in range(STEPS):
    opt_l.zero_grad()
    torch.nn.functional.cross_entropy(learner(x).logits, y).backward()
    opt_l.step()
    opt_v.zero_grad()
    recon, mu, logvar = vae(xv)
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    (torch.nn.functional.mse_loss(recon, xv) + 0.1 * kl).backward()
    opt_v.step()
    opt_d.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(
        disc(mu.detach()), torch.ones(64)).backward()
    opt_d.step()
print(json.dumps({"level": tavaal.CPU_KERNELS, "seconds": time.process_time() - start}))
"""


def _run(level: str, steps: int) -> dict:
    env = {**os.environ, "TAVAAL_CPU_KERNELS": level, "OMP_NUM_THREADS": "1"}
    code = WORKLOAD.replace("STEPS", str(steps))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    levels = ["native", "avx2", "baseline"]
    seconds: dict[str, list[float]] = {level: [] for level in levels}
    names = {}
    for _ in range(args.repeats):  # interleaved, so that load drifts hit every level alike
        for level in levels:
            result = _run(level, args.steps)
            seconds[level].append(result["seconds"])
            names[level] = result["level"]
    base = statistics.median(seconds["native"])
    print(f"| level | CPU s for {args.steps} steps (median of {args.repeats}) | vs native |")
    print("|---|---|---|")
    for level in levels:
        median = statistics.median(seconds[level])
        print(f"| `{names[level]}` | {median:.2f} | {median / base:.2f}× |")


if __name__ == "__main__":
    main()
