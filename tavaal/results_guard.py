"""Finished results are never replaced silently by a run with other settings.

Every result file records the hash of the settings that produced it: the index files
(labeled.parquet, scores.parquet) in their parquet metadata, metrics.json as a key. Snakemake
reruns a job whose params changed and overwrites its outputs; before any job runs, the workflow
compares the hashes of an experiment's existing files with those its current settings would
write, and stops when they differ unless the experiment is listed in `replace_results`. The same
holds for a practitioner's image folder changed since it was prepared (`check_image_folders`), and
one run at a time writes a results_dir (`take_results_lock`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from tavaal.config import ExperimentConfig, settings_hash
from tavaal.data.image_folder import FolderState
from tavaal.errors import ConfigError
from tavaal.layout import run_file
from tavaal.strategies import method_hash, strategy_class
from tavaal.training import training_hash


@dataclass(frozen=True)
class StaleFile:
    path: Path
    found: str
    expected: str


def stale_results(results_dir: str | Path, exp: ExperimentConfig) -> list[StaleFile]:
    """Existing files of `exp` under `results_dir` whose settings hash differs from the one the
    experiment's current settings give them."""
    expected: dict[Path, str] = {}
    for seed in exp.seeds:
        for method in exp.methods:
            recipe_hash = training_hash(exp, strategy_class(method).recipe)
            for stage in range(exp.stages):
                expected[run_file(results_dir, exp.name, method, seed, stage, "metrics.json")] = (
                    recipe_hash
                )
                labeled = run_file(results_dir, exp.name, method, seed, stage, "labeled.parquet")
                expected[labeled] = (
                    settings_hash(exp.pool_settings()) if stage == 0 else method_hash(exp, method)
                )
                if stage + 1 < exp.stages:
                    scores = run_file(results_dir, exp.name, method, seed, stage, "scores.parquet")
                    expected[scores] = method_hash(exp, method)
    stale = []
    for path, want in expected.items():
        found = _recorded_hash(path)
        if found is not None and found != want:
            stale.append(StaleFile(path, found, want))
    return stale


def check_results_match(
    results_dir: str | Path,
    experiments: dict[str, ExperimentConfig],
    replace: list[str] | tuple[str, ...] = (),
) -> None:
    """One ConfigError naming every experiment whose finished results the run would replace."""
    problems, names = [], []
    for name, exp in experiments.items():
        if name in replace:
            continue
        stale = stale_results(results_dir, exp)
        if stale:
            kinds = Counter(path.path.name for path in stale)
            listing = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
            problems.append(f"{name} ({listing}; e.g. {stale[0].path})")
            names.append(f'"{name}"')
    if problems:
        raise ConfigError(
            "finished results were made with other settings and this run would replace them: "
            f"{'; '.join(problems)}. To keep both, give the changed experiment a new name under "
            "`experiments:`; to replace them on purpose, run with "
            f"--config 'replace_results=[{', '.join(names)}]'"
        )


def _recorded_hash(path: Path) -> str | None:
    """The settings hash a result file records, or None when the file does not exist (or
    records none: older files are reported by the readers themselves)."""
    if not path.exists():
        return None
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text()).get("settings_hash")
        except (OSError, ValueError):
            return None
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    value = metadata.get(b"settings_hash")
    return value.decode() if value is not None else None


# Runs named per experiment in the error; more are counted.
SHOWN_RUNS = 8


def finished_runs(results_dir: str | Path, experiment: str) -> list[str]:
    """The runs of `experiment` under `results_dir` that hold files, as folders two levels
    below the experiment's (``<method>/seed<s>``, ``stage0/seed<s>``, ``export/<method>``,
    ``figures``...): what preparing its dataset again would replace."""
    folder = Path(results_dir) / experiment
    runs = {
        (folder / Path(*path.relative_to(folder).parent.parts[:2])).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
    }
    return sorted(runs)


def check_image_folders(
    results_dir: str | Path,
    states: Mapping[str, FolderState],
    datasets: Mapping[str, str],
    replace: list[str] | tuple[str, ...] = (),
) -> None:
    """One ConfigError naming every image folder that changed (its images or its entry) since
    it was prepared while experiments (`datasets`: experiment -> dataset, every experiment of
    the config) have finished results made from it: preparing it again would renumber or
    change their samples, and the runs would be replaced as after any other settings change."""
    problems, names = [], []
    for name, state in states.items():
        if not state.prepares_again:
            continue
        runs = {}
        for experiment, dataset in datasets.items():
            if dataset == name and experiment not in replace:
                found = finished_runs(results_dir, experiment)
                if found:
                    runs[experiment] = found
        if not runs:
            continue
        listed = []
        for experiment, found in runs.items():
            more = f" and {len(found) - SHOWN_RUNS} more" if len(found) > SHOWN_RUNS else ""
            shown = ", ".join(found[:SHOWN_RUNS]) + more
            listed.append(f"experiment {experiment} ({shown})")
            names.append(f'"{experiment}"')
        problems.append(
            f"{state.spec.where}: {state.describe()}; preparing {state.prepared} again would "
            f"renumber or change the samples that finished results were made from, and replace "
            f"them: {'; '.join(listed)}"
        )
    if problems:
        raise ConfigError(
            f"{'. '.join(problems)}. To keep them, restore the folder and the entry as they "
            "were; to keep both, declare the changed folder under a new image_folders name with "
            "experiments of its own; to replace them on purpose, run with "
            f"--config 'replace_results=[{', '.join(names)}]'"
        )


# Snakemake's own lock guards a working folder; runs started from two working folders that share
# a results_dir would run the same jobs at once, so the workflow also locks the results_dir.
RUN_LOCK = ".tavaal-run.lock"


def take_results_lock(results_dir: str | Path) -> Path:
    """Lock `results_dir` for this process (the file `RUN_LOCK` under it, holding pid, host,
    working folder and start time), released by `release_results_lock` or at exit. A lock left
    by a process that no longer runs on this host is taken over; any other lock raises one
    ConfigError naming the lock file and its holder."""
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / RUN_LOCK
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "workdir": os.getcwd(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and _is_stale(holder):
                lock.unlink(missing_ok=True)
                continue
            raise ConfigError(_held_message(lock, holder)) from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(mine) + "\n")
        atexit.register(release_results_lock, folder)
        return lock
    raise ConfigError(_held_message(lock, _lock_holder(lock)))


def release_results_lock(results_dir: str | Path) -> None:
    """Remove the lock of `results_dir` if this process holds it (a no-op otherwise)."""
    lock = Path(results_dir) / RUN_LOCK
    holder = _lock_holder(lock)
    if holder is not None and (holder.get("pid"), holder.get("host")) == (
        os.getpid(),
        socket.gethostname(),
    ):
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> dict | None:
    """What the lock file says, or None when it is gone or unreadable (being written)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _is_stale(holder: dict) -> bool:
    """Whether the holder was a process of this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _held_message(lock: Path, holder: dict | None) -> str:
    if holder is None:
        who = "another run (its lock file is being written or unreadable)"
    else:
        who = (
            f"another run (pid {holder.get('pid')} on host {holder.get('host')}, started "
            f"{holder.get('started')} in {holder.get('workdir')})"
        )
    return (
        f"{lock}: {who} is writing this results_dir; two runs at once would run the same jobs. "
        "Wait for it to finish; if it no longer runs (e.g. it was killed on another host), "
        "delete the lock file"
    )
