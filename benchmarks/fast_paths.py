"""What tavaal's two fast paths save per workflow job, on the installed torch.

- `tavaal.optim`: optimizers built without the `torch._dynamo` import (off with
  TAVAAL_FAST_OPTIMIZERS=0);
- `tavaal.stage.end_process`: a job ends with `os._exit(0)` once its outputs are written and
  closed, skipping the interpreter's shutdown (off with TAVAAL_FAST_EXIT=0).

One tiny experiment (two moons, random/VAAL/TA-VAAL, 1 seed, 3 stages: its training and
query jobs) runs through Snakemake on one core from an empty folder under each of the four
settings, the repetitions interleaved. Measured: CPU seconds of every process of the run (the
`getrusage` of waited-for children: Snakemake and its jobs) and wall seconds; the saving per
training or query job is the difference from "both on" divided by their number. Every index
and scores table is checked to be identical across the settings (query timings excepted), so
that a saving never comes with another result.

    python benchmarks/fast_paths.py [--repeats 2] [--json benchmarks/results/fast_paths.json]
                                    [--markdown section.md] [--render-only]

The JSON keeps one entry per torch version, so running it under each supported torch (README,
"Install") collects both; the Markdown renders every entry for the README's `fast_paths`
section: `tavaal readme-update --name fast_paths README.md section.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = {
    "dataset": "moons",
    "model": "mlp",
    "methods": ["random", "vaal", "tavaal"],
    "seeds": [0],
    "initial_size": 20,
    "budget": 10,
    "stages": 3,
    "subset_size": 60,
    "train": {"epochs": 3, "batch_size": 16, "optimizer": "adam", "milestones": [2]},
    "ranker": {"detach_epoch": 2},
    "vae": {"latent_dim": 4, "hidden": 8, "disc_hidden": 8, "iterations": 5},
}
CONFIG = {"device": "cpu", "run_experiments": ["bench"], "experiments": {"bench": EXPERIMENT}}
SETTINGS = {
    "both on": {"TAVAAL_FAST_OPTIMIZERS": "1", "TAVAAL_FAST_EXIT": "1"},
    "optimizers off": {"TAVAAL_FAST_OPTIMIZERS": "0", "TAVAAL_FAST_EXIT": "1"},
    "exit off": {"TAVAAL_FAST_OPTIMIZERS": "1", "TAVAAL_FAST_EXIT": "0"},
    "both off": {"TAVAAL_FAST_OPTIMIZERS": "0", "TAVAAL_FAST_EXIT": "0"},
}
JOB_RULES = ("train", "query_stage")


def _run(setting: str, workdir: Path) -> dict:
    """One Snakemake run of the experiment in an empty `workdir`: seconds and the job count."""
    (workdir / "bench.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, **SETTINGS[setting], "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "all",
        "--configfile",
        str(workdir / "bench.yaml"),
        "--cores",
        "1",
        "--quiet",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"snakemake failed under {setting!r}:\n{result.stderr[-4000:]}")
    benchmarks = list((workdir / "benchmarks").rglob("*.tsv"))
    jobs = sum(1 for path in benchmarks if path.stem.startswith(JOB_RULES))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_seconds": cpu, "wall_seconds": wall, "jobs": jobs}


def _without_seconds(metadata: dict) -> dict:
    """Metadata without its timings (every key ending in "seconds", nested ones too)."""
    return {
        key: _without_seconds(value) if isinstance(value, dict) else value
        for key, value in metadata.items()
        if not key.endswith("seconds")
    }


def _tables(workdir: Path) -> dict[str, object]:
    """Every index file's bytes and scores table of the run (timings dropped), by path."""
    import pandas as pd

    from tavaal.pool import read_scores

    tables: dict[str, object] = {}
    for path in sorted((workdir / "results").rglob("*.parquet")):
        key = str(path.relative_to(workdir))
        if path.name == "scores.parquet":
            scores, metadata = read_scores(path)
            metadata = _without_seconds(metadata)
            # Hashed per value: exact, and NaN scores (random's) compare equal.
            values = pd.util.hash_pandas_object(scores, index=False).to_numpy().tobytes()
            tables[key] = (list(scores.columns), values, metadata)
        else:
            tables[key] = path.read_bytes()  # index files are byte-identical or wrong
    return tables


def measure(repeats: int) -> dict:
    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    reference: dict[str, object] | None = None
    with tempfile.TemporaryDirectory(prefix="tavaal-fast-paths-") as scratch:
        for repeat in range(repeats):
            for setting in SETTINGS:
                workdir = Path(scratch) / f"{repeat}-{setting.replace(' ', '-')}"
                workdir.mkdir()
                run = _run(setting, workdir)
                tables = _tables(workdir)
                if reference is None:
                    reference = tables
                elif tables != reference:
                    differing = sorted(
                        key
                        for key in tables.keys() | reference.keys()
                        if tables.get(key) != reference.get(key)
                    )
                    sys.exit(
                        f"{setting!r} gave other index or scores tables than 'both on': "
                        + ", ".join(differing)
                    )
                runs[setting].append(run)
                print(
                    f"repeat {repeat + 1}/{repeats} {setting}: {run['cpu_seconds']:.1f} CPU s, "
                    f"{run['wall_seconds']:.1f} s wall, {run['jobs']} jobs",
                    file=sys.stderr,
                )
    jobs = runs["both on"][0]["jobs"]
    base_cpu = statistics.median(run["cpu_seconds"] for run in runs["both on"])
    base_wall = statistics.median(run["wall_seconds"] for run in runs["both on"])
    summary = {}
    for setting, values in runs.items():
        cpu = statistics.median(run["cpu_seconds"] for run in values)
        wall = statistics.median(run["wall_seconds"] for run in values)
        summary[setting] = {
            "cpu_seconds": round(cpu, 2),
            "wall_seconds": round(wall, 2),
            "cpu_saved_per_job": round((cpu - base_cpu) / jobs, 2),
            "wall_saved_per_job": round((wall - base_wall) / jobs, 2),
        }
    import torch

    return {
        "commit": _commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "repeats": repeats,
        "jobs": jobs,
        "same_results": True,
        "settings": summary,
    }


def _commit() -> str:
    """The checkout's commit, with "+changes" when its tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(entries: dict) -> str:
    lines = [
        "<!-- Generated by `python benchmarks/fast_paths.py --markdown F` from "
        "benchmarks/results/fast_paths.json; rerun it, do not edit this text. -->",
        "",
        "| torch | setting | CPU s (run) | wall s (run) | CPU s per job | wall s per job |",
        "|---|---|---|---|---|---|",
    ]
    for version, entry in sorted(entries.items()):
        for setting in SETTINGS:
            values = entry["settings"][setting]
            lines.append(
                f"| {version} | {setting} | {values['cpu_seconds']:.1f} | "
                f"{values['wall_seconds']:.1f} | {values['cpu_saved_per_job']:+.2f} | "
                f"{values['wall_saved_per_job']:+.2f} |"
            )
    first = next(iter(entries.values()))
    lines += [
        "",
        f"Medians of {first['repeats']} runs of {first['jobs']} training and query jobs each "
        f"(commit {', '.join(sorted({e['commit'] for e in entries.values()}))}; "
        f"two moons; {', '.join(sorted({e['cpu'] for e in entries.values()}))}, one core); "
        '"per job" is the difference from "both on" divided by the jobs: what a job '
        "costs more without the fast path(s). Index and scores tables were identical under "
        "all four settings.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/fast_paths.json")
    parser.add_argument("--markdown", type=Path, help="write the README section here")
    parser.add_argument(
        "--render-only", action="store_true", help="only render --markdown from --json"
    )
    args = parser.parse_args()
    entries = json.loads(args.json.read_text()) if args.json.exists() else {}
    if not args.render_only:
        entry = measure(args.repeats)
        entries[entry["torch"]] = entry
        args.json.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        print(json.dumps(entry, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
