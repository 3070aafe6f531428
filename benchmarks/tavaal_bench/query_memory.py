"""Peak memory of one query over a large candidate pool (ImageNet-sized class count).

    python benchmarks/query_memory.py [--candidates 100000] [--classes 1000] [--embedding 512]
                                      [--methods entropy bald ...] [--tavaal-root PATH]

Each method runs in a fresh subprocess: the process's resident-set high-water mark (VmHWM) is
reset through /proc/self/clear_refs once the pool, the models and the query context exist, and
the figure reported is the peak RSS during `strategy.query(ctx)` minus the RSS just before it,
i.e. what the selection itself allocates (numpy and torch CPU memory alike; tracemalloc would see
neither). Where the reset is not possible, getrusage's lifetime ru_maxrss is used instead.

The task learner is tavaal's 3-layer MLP on synthetic 16-d vectors, with K classes and an
E-wide hidden layer (its embedding), untrained: its weights (16*E + E*E + E*K floats) and one
inference batch are tiny next to the (N, K) and (N, E) arrays of the selection. `--tavaal-root`
runs the children against another checkout of the library (for a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("entropy", "bald", "dbal", "var_ratio", "ensemble_varr", "coreset")
INPUT_DIM = 16


def run_child(args: argparse.Namespace) -> dict:
    """One query in this process; the result as a dict (printed as JSON by `main`)."""
    import numpy as np
    import torch

    from tavaal.config import ExperimentConfig, QueryConfig, TrainConfig
    from tavaal.data import DatasetInfo, PreparedDataset
    from tavaal.models.small import MLP
    from tavaal.strategies import QueryContext, get_strategy, strategy_class
    from tavaal.training import TrainedModels
    from tavaal_bench.memory import _proc_status_kb, _release_freed_memory, _reset_peak_rss

    torch.set_num_threads(args.threads)
    n, k, e = args.candidates, args.classes, args.embedding
    n_train = args.labeled + n
    rng = np.random.default_rng(0)
    info = DatasetInfo(
        name="synthetic-vectors",
        kind="vector",
        num_classes=k,
        classes=tuple(str(c) for c in range(k)),
        input_shape=(INPUT_DIM,),
        mean=(0.0,) * INPUT_DIM,
        std=(1.0,) * INPUT_DIM,
        n_train=n_train,
        n_test=1,
    )
    dataset = PreparedDataset(
        info=info,
        x_train=rng.normal(size=(n_train, INPUT_DIM)).astype(np.float32),
        y_train=rng.integers(0, k, n_train).astype(np.int64),
        x_test=np.zeros((1, INPUT_DIM), dtype=np.float32),
        y_test=np.zeros(1, dtype=np.int64),
    )
    exp = ExperimentConfig(
        name="query-memory",
        dataset="moons",
        model="mlp",
        initial_size=args.labeled,
        budget=args.budget,
        subset_size=0,
        train=TrainConfig(dropout=0.3),
        query=QueryConfig(
            mc_samples=args.mc_samples,
            ensemble_size=args.ensemble_size,
            inference_batch_size=args.batch_size,
        ),
    )
    method = args.child
    torch.manual_seed(0)
    members = args.ensemble_size if strategy_class(method).recipe.ensemble else 1
    models = [MLP(INPUT_DIM, k, hidden=e, dropout=0.3).eval() for _ in range(members)]
    labeled = np.arange(args.labeled, dtype=np.int64)
    candidates = np.arange(args.labeled, n_train, dtype=np.int64)
    ctx = QueryContext(
        experiment=exp,
        method=method,
        seed=0,
        stage=0,
        dataset=dataset,
        labeled=labeled,
        candidates=candidates,
        unlabeled=candidates,
        budget=args.budget,
        device=torch.device("cpu"),
        models=TrainedModels(models=models),
        log=lambda line: None,
    )
    strategy = get_strategy(method)
    _release_freed_memory()
    hwm = _reset_peak_rss()
    before_kb = _proc_status_kb("VmRSS")
    started = time.perf_counter()
    result = strategy.query(ctx)
    seconds = time.perf_counter() - started
    if hwm:
        peak_kb = _proc_status_kb("VmHWM")
        how = "VmHWM reset through /proc/self/clear_refs"
    else:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        how = "getrusage ru_maxrss (lifetime peak)"
    chosen = np.asarray(result.chosen, dtype=np.int64)
    return {
        "method": method,
        "candidates": n,
        "classes": k,
        "embedding": e,
        "peak_increase_mb": round((peak_kb - before_kb) / 1024, 1),
        "rss_before_mb": round(before_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "query_seconds": round(seconds, 2),
        "measured_by": how,
        # A fingerprint of the selection, so before/after runs can be compared for equality.
        "chosen_hash": int(np.bitwise_xor.reduce(chosen * 2654435761 % 2**31))
        if len(chosen)
        else 0,
        "score_sum": float(np.asarray(result.scores["score"], dtype=np.float64).sum()),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Peak memory of one query per method over a large candidate pool.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--candidates", type=int, nargs="+", default=[100_000])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--embedding", type=int, default=512, help="MLP hidden width (E)")
    parser.add_argument("--labeled", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--mc-samples", type=int, default=10)
    parser.add_argument("--ensemble-size", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512, help="query.inference_batch_size")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--tavaal-root", type=Path, help="checkout whose tavaal package the children import"
    )
    parser.add_argument("--out", type=Path, help="JSON lines file (one line per measurement)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        (args.candidates,) = args.candidates
        print(json.dumps(run_child(args)))
        return
    bench_dir = Path(__file__).resolve().parents[1]
    root = args.tavaal_root or bench_dir.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(bench_dir)])}
    rows = []
    for n in args.candidates:
        for method in args.methods:
            cmd = [sys.executable, "-m", "tavaal_bench.query_memory", "--child", method]
            cmd += ["--candidates", str(n), "--classes", str(args.classes)]
            cmd += ["--embedding", str(args.embedding), "--labeled", str(args.labeled)]
            cmd += ["--budget", str(args.budget), "--mc-samples", str(args.mc_samples)]
            cmd += ["--ensemble-size", str(args.ensemble_size)]
            cmd += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{method} at {n} candidates failed")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{method:>14} N={n:>7} K={args.classes} E={args.embedding}: "
                f"peak +{row['peak_increase_mb']:.0f} MB ({row['query_seconds']:.1f} s)",
                flush=True,
            )
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
