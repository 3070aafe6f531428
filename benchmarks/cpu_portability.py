"""Fingerprints of a tiny two-stage run, to compare across CPUs or emulated instruction sets.

Runs the digits configuration of tests/test_cli.py (small CNN, two stages, tiny VAE/D) for a few
methods through `tavaal run`, then prints one JSON object: the pinned CPU-kernel level, what
torch reports as its capability, and the fingerprint of every index file (the hash of
tests/expected_results.py). Two machines, or one machine under two instruction-set caps, agree
when the JSON files are equal except for the `cpu` field. For example, on an AMD AVX2 machine:

    python benchmarks/cpu_portability.py native.json
    qemu-x86_64 -cpu Haswell .venv/bin/python benchmarks/cpu_portability.py haswell.json
    TAVAAL_CPU_KERNELS=baseline python benchmarks/cpu_portability.py baseline.json
    TAVAAL_CPU_KERNELS=baseline qemu-x86_64 -cpu SandyBridge .venv/bin/python \
        benchmarks/cpu_portability.py sandybridge.json

(qemu-user's emulated Intel Haswell has AVX2 and FMA, its SandyBridge AVX only; qemu-user shows
the host's /proc/cpuinfo, so there the level is set, not detected). Under emulation the run is
slow (about 20 minutes), so it covers six methods, not all.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import tavaal  # first: pins the CPU kernels (tavaal.cpu_kernels)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from expected_results import content_hash  # noqa: E402
from test_cli import CONFIG  # noqa: E402

METHODS = ["random", "entropy", "coreset", "lloss", "vaal", "tavaal"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the JSON file to write")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    args = parser.parse_args()

    import torch
    import yaml

    from tavaal.cli import main as tavaal_main

    torch.set_num_threads(1)
    config = json.loads(json.dumps(CONFIG))
    config["experiments"]["tiny"]["methods"] = args.methods
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        code = tavaal_main(
            [
                "run",
                "--config",
                str(root / "config.yaml"),
                "--results-dir",
                str(root / "results"),
                "--data-dir",
                str(root / "data"),
                "--device",
                "cpu",
            ]
        )
        if code != 0:
            raise SystemExit(code)
        results = root / "results"
        fingerprints = {
            str(path.relative_to(results)): content_hash(path)
            for path in sorted(results.rglob("*.parquet"))
        }
    args.output.write_text(
        json.dumps(
            {
                "cpu": _cpu_model(),
                "kernels": tavaal.CPU_KERNELS,
                "torch_capability": torch.backends.cpu.get_cpu_capability(),
                "fingerprints": fingerprints,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
