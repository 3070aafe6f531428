"""The real workflow (Snakefile, rules/) through profiles/slurm on the throwaway cluster of
slurm_cluster.py: issue #4's end-to-end checks.

One tiny experiment (two moons, MLP, random + TA-VAAL, one seed, two stages) runs once locally
(`--cores 2`, meanwhile: the SLURM jobs mostly wait for status checks) and once through
`--profile profiles/slurm` plus an overlay that only shortens the plugin's status-check
interval (its 40 s default would make every step of the chain take minutes). The SLURM run is
then copied for the tests that cancel, retry or force jobs, so the whole chain is submitted
only once. While the SLURM run goes on, a watcher reads the environment of every process that
SLURM tracks for a job (`scontrol listpids`, /proc/PID/environ): the CUDA_VISIBLE_DEVICES that
the rule's own script saw.

The config is the same everywhere so that every result can be compared with the local run.
Its training is long enough (300 epochs of 3 batches, a few seconds) to cancel a job in the
middle of it, and saves a resumable state every 50 epochs, as a long cluster job would.
Targets are the metrics plus one figure and one table, not every figure: that keeps the local
rules in the run without ~40 s of plotting.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

try:
    import slurm_cluster as cluster_module
    from slurm_cluster import ACCOUNTING_ENV, REQUIRE_ENV, SlurmCluster, SlurmUnavailable, env_flag
    from test_slurm_harness import SLURM_PROFILE, _gpu_request, _job
    from test_workflow import TRIGGERS, tiny_files, workdir_with_config
except ImportError:  # tests/ imported as a package (e.g. --import-mode=importlib)
    from tests import slurm_cluster as cluster_module
    from tests.slurm_cluster import (
        ACCOUNTING_ENV,
        REQUIRE_ENV,
        SlurmCluster,
        SlurmUnavailable,
        env_flag,
    )
    from tests.test_slurm_harness import SLURM_PROFILE, _gpu_request, _job
    from tests.test_workflow import TRIGGERS, tiny_files, workdir_with_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CONFIG = "tiny.yaml"
EPOCHS = 300
CHECKPOINT_EVERY = 50
METHODS = ("random", "tavaal")
STAGES = 2
TINY = {
    "run_experiments": ["tiny"],
    "experiments": {
        "tiny": {
            "dataset": "moons",
            "model": "mlp",
            "methods": list(METHODS),
            "seeds": [0],
            "initial_size": 20,
            "budget": 10,
            "stages": STAGES,
            "subset_size": 100,
            "train": {
                "epochs": EPOCHS,
                "batch_size": 8,
                "optimizer": "adam",
                "lr": 0.05,
                "milestones": [],
                "weight_decay": 0.0,
                "checkpoint_every": CHECKPOINT_EVERY,
            },
            "ranker": {"detach_epoch": 200},
            "vae": {
                "latent_dim": 4,
                "hidden": 16,
                "disc_hidden": 16,
                "disc_depth": 2,
                "batch_size": 32,
                "iterations": 20,
                "lr": 0.01,
                "disc_lr": 0.01,
            },
        }
    },
}
RUN = "results/tiny/{method}/seed0"
# Stage 0 is shared (tavaal.layout): the pool per seed, the model per training recipe.
STAGE0 = "results/tiny/stage0/seed0"
RECIPES = {"random": "plain", "tavaal": "ranking_ranker"}
LABELED = "results/tiny/**/labeled.parquet"
METRICS = "results/tiny/**/metrics.json"
# The plugin checks at t = N, 2N + 10, 3N + 30, ... s until a job is seen finished. A job of
# this workflow lasts ~12-25 s on two loaded cores (Snakemake starts twice inside the job,
# then the script imports torch), so N = 8 sees it at 26 s; N = 2 (harness) would at 36 s.
STATUS_TIMING = {"slurm-init-seconds-before-status-checks": 8}
TARGETS = ["all", "results/tiny/tables/accuracy.csv", "results/tiny/figures/accuracy.png"]
# Rules of TARGETS' jobs that the Snakefile keeps local (`localrules:`).
LOCAL_RULES = {"all", "prepare_dataset", "aggregate", "tables", "figure_accuracy"}
GPU_RULES = {"train_initial", "train", *(f"query_stage{k}" for k in range(STAGES - 1))}
CPU_SUBMITTED_RULES = {"init_pool"}
RUN_TIMEOUT = 600  # seconds for one snakemake invocation; the full SLURM run takes ~2 min


# ------------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module", name="slurm_cluster")
def shared_slurm_cluster() -> Iterator[SlurmCluster]:
    """The session cluster of test_slurm_harness.py when it is already up, else our own.

    Importing `slurm_cluster_fixture` here would give this module a second session-scoped
    instance, which cannot start while the first one holds the host lock. Our own cluster is
    stopped at the end of the module, so a module that runs after this one can start its own.
    """
    active = cluster_module._active
    if active is not None and active.running:
        yield active
        return
    cluster = SlurmCluster(accounting=env_flag(ACCOUNTING_ENV))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if env_flag(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but no SLURM test cluster: {exc}", pytrace=False)
        pytest.skip(f"no local SLURM test cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


# ------------------------------------------------------------------------------- helpers


def _tail(text: str, chars: int = 5000) -> str:
    return text[-chars:]


def _log_tails(workdir: Path, files: int = 4, lines: int = 15) -> str:
    """Last lines of the most recently written job logs (rule logs and SLURM job logs)."""
    logs = [p for d in ("logs", ".snakemake/slurm_logs") for p in (workdir / d).rglob("*.log")]
    logs.sort(key=lambda p: p.stat().st_mtime)
    parts = []
    for path in logs[-files:]:
        text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        parts.append(f"--- {path.relative_to(workdir)} ---\n{text}")
    return "\n".join(parts) or "(no job logs)"


@dataclass
class Run:
    """One snakemake invocation and what it submitted to SLURM."""

    workdir: Path
    returncode: int
    output: str
    jobs: list[str] = field(default_factory=list)  # SLURM job ids, in submission order
    records: dict[str, dict[str, str]] = field(default_factory=dict)  # scontrol, per job id

    def describe(self, cluster: SlurmCluster | None = None) -> str:
        text = f"snakemake exit {self.returncode}; output:\n{_tail(self.output)}\n"
        text += _log_tails(self.workdir)
        if cluster is not None:
            text += "\n" + cluster.logs(15)
        return text

    def submitted(self) -> Counter:
        """(rule, wildcard values joined by "_") of every submission, counted."""
        return Counter(_rule_of(record) for record in self.records.values())


def _rule_of(record: dict[str, str]) -> tuple[str, str]:
    # The plugin's comment: rule_<rule>[_wildcards_<values joined by _>].
    match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(\S*))?", record.get("Comment", ""))
    assert match, f"job {record.get('JobId')} has no rule comment: {record}"
    return match.group(1), match.group(2) or ""


def _snakemake_command(
    workdir: Path, targets: list[str], *extra: str, overlay: Path | None = None
) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    # Targets before the options that take several values (--configfile, --rerun-triggers).
    command += ["--directory", str(workdir), *targets, "--configfile", str(workdir / CONFIG)]
    command += TRIGGERS
    if overlay is None:
        command += ["--cores", "2"]
    else:
        command += ["--profile", str(SLURM_PROFILE), "--profile", str(overlay)]
    return command + list(extra)


def _overlay(path: Path, **settings) -> Path:
    """A second profile with the test-only settings; later profiles replace whole keys."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump({**STATUS_TIMING, **settings}))
    return path


def _ctld_log(cluster: SlurmCluster) -> Path:
    return cluster.log_file("slurmctld")


def _submitted_since(cluster: SlurmCluster, offset: int) -> list[str]:
    with open(_ctld_log(cluster), "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+) ", text)


def _squeue(cluster: SlurmCluster) -> dict[str, tuple[str, str]]:
    """job id -> (state, comment) of the jobs slurmctld still lists."""
    out = cluster.run("squeue", "-h", "--states=all", "-o", "%A|%T|%k", check=False).stdout
    rows = (line.split("|", 2) for line in out.splitlines() if line.count("|") >= 2)
    return {job: (state, comment) for job, state, comment in rows}


class Invocation:
    """snakemake running in the background: `finish()` waits for it and collects the run."""

    def __init__(
        self,
        workdir: Path,
        command: list[str],
        env: dict[str, str],
        cluster: SlurmCluster | None = None,
    ) -> None:
        self.workdir = workdir
        self.cluster = cluster
        self.offset = _ctld_log(cluster).stat().st_size if cluster is not None else 0
        self.output_path = workdir.parent / f"{workdir.name}.snakemake-{time.time_ns()}.out"
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a timeout stops it and its children
            )
        self.deadline = time.monotonic() + RUN_TIMEOUT
        self.run: Run | None = None

    def finish(self, during: Callable[[subprocess.Popen], None] | None = None) -> Run:
        """Wait for the end; `during(process)` runs meanwhile (e.g. to cancel a job).

        On a timeout, SIGINT (Snakemake then scancels its jobs), then SIGKILL, and fail with
        the output and the tails of the job and daemon logs."""
        if self.run is not None:
            return self.run
        timed_out = False
        try:
            if during is not None:
                during(self.process)
            self.process.wait(timeout=max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            self.stop()
        run = Run(
            self.workdir, self.process.returncode, self.output_path.read_text("utf-8", "replace")
        )
        if self.cluster is not None:
            run.jobs = _submitted_since(self.cluster, self.offset)
            # Finished jobs stay in slurmctld for MinJobAge = 300 s: read them right away.
            run.records = {job: _job(self.cluster, job) for job in run.jobs}
        self.run = run
        if timed_out:
            pytest.fail(
                f"snakemake did not end within {RUN_TIMEOUT}s\n{run.describe(self.cluster)}"
            )
        return run

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _run(
    workdir: Path,
    command: list[str],
    env: dict[str, str],
    cluster: SlurmCluster | None = None,
    during: Callable[[subprocess.Popen], None] | None = None,
) -> Run:
    return Invocation(workdir, command, env, cluster).finish(during)


def _check_ok(run: Run, cluster: SlurmCluster | None = None) -> Run:
    assert run.returncode == 0, run.describe(cluster)
    return run


def _local_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    return {**env, "OMP_NUM_THREADS": "1"}


def _slurm_env(cluster: SlurmCluster) -> dict[str, str]:
    return {**cluster.env(), "OMP_NUM_THREADS": "1"}


def _accuracies(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): json.loads(p.read_text())["accuracy"]
        for p in sorted(root.glob(METRICS))
    }


def _result_files(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under results/: (mtime in ns, bytes)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted((root / "results").rglob("*"))
        if p.is_file()
    }


def _copy_run(source: Path, target: Path) -> Path:
    # copy2 keeps mtimes, and .snakemake/ (metadata) comes along: nothing is out of date.
    shutil.copytree(source, target, symlinks=True)
    return target


def _wait_running(
    cluster: SlurmCluster,
    process: subprocess.Popen,
    comment: str,
    ready: Callable[[], bool] = lambda: True,
    timeout: float = 300,
) -> str:
    """The id of the job with this comment once it is RUNNING in squeue and `ready()`."""
    deadline = time.monotonic() + timeout
    while True:
        running = [
            j for j, (state, c) in _squeue(cluster).items() if c == comment and state == "RUNNING"
        ]
        if running and ready():
            return running[-1]
        if process.poll() is not None:
            raise AssertionError(
                f"snakemake ended (exit {process.returncode}) before {comment} ran"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{comment} was not running within {timeout}s: {_squeue(cluster)}")
        time.sleep(0.1)


def _scancel(cluster: SlurmCluster, job: str) -> None:
    result = cluster.run("scancel", job, check=False)
    assert result.returncode == 0, (
        f"scancel {job} failed (job finished first? make train.epochs larger): {result.stderr}"
    )


class JobWatch(threading.Thread):
    """Records, for every process SLURM tracks for a job, its CUDA_VISIBLE_DEVICES (None when
    unset) and whether it is the rule's script (Snakemake runs `script:` files from
    .snakemake/scripts/)."""

    def __init__(self, cluster: SlurmCluster, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval = interval
        self.cvd: dict[str, set[str | None]] = {}
        self.script_cvd: dict[str, set[str | None]] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                listing = self.cluster.run("scontrol", "listpids", check=False).stdout
            except (OSError, subprocess.SubprocessError):  # a slow poll: the next one counts
                listing = ""
            for line in listing.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 3 and parts[0].isdigit():
                    self._record(parts[0], parts[1])
            self._done.wait(self.interval)

    def _record(self, pid: str, job: str) -> None:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # ended meanwhile
            return
        variables = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        value = variables.get(b"CUDA_VISIBLE_DEVICES")
        cvd = None if value is None else value.decode()
        self.cvd.setdefault(job, set()).add(cvd)
        if b".snakemake/scripts/" in cmdline:
            self.script_cvd.setdefault(job, set()).add(cvd)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)


# ------------------------------------------------------------------------------ fixtures


class LocalRun:
    """The reference run, started in the background (it overlaps the SLURM run)."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    @property
    def workdir(self) -> Path:
        _check_ok(self.invocation.finish())
        return self.invocation.workdir


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Iterator[LocalRun]:
    """TARGETS of the tiny experiment with plain `snakemake --cores 2`."""
    workdir = workdir_with_config(tmp_path_factory.mktemp("local") / "wf", TINY, CONFIG)
    invocation = Invocation(workdir, _snakemake_command(workdir, TARGETS), _local_env())
    try:
        yield LocalRun(invocation)
    finally:
        invocation.stop()


@dataclass
class SlurmRun:
    run: Run
    watch: JobWatch


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: SlurmCluster, local_run, tmp_path_factory) -> SlurmRun:
    """TARGETS through profiles/slurm, watched. Requests local_run so that it runs meanwhile."""
    base = tmp_path_factory.mktemp("slurm")
    workdir = workdir_with_config(base / "wf", TINY, CONFIG)
    overlay = _overlay(base / "test-profile")
    watch = JobWatch(slurm_cluster)
    watch.start()
    try:
        run = _run(
            workdir,
            _snakemake_command(workdir, TARGETS, overlay=overlay),
            _slurm_env(slurm_cluster),
            slurm_cluster,
        )
    finally:
        watch.stop()
    _check_ok(run, slurm_cluster)
    return SlurmRun(run, watch)


def _expected_chain() -> Counter:
    jobs = Counter({("init_pool", "tiny_0"): 1})
    for method in METHODS:
        jobs["train_initial", f"tiny_0_{RECIPES[method]}"] += 1
        for stage in range(1, STAGES):
            jobs["train", f"tiny_{method}_0_{stage}"] += 1
        for stage in range(STAGES - 1):
            jobs[f"query_stage{stage}", f"tiny_{method}_0"] += 1
    return jobs


def _same_weights(first: Path, second: Path) -> bool:
    """Task learner and ranker of two model.pt files are equal, tensor by tensor."""
    import torch

    a, b = (torch.load(path, map_location="cpu", weights_only=True) for path in (first, second))
    for key in ("model", "ranker"):
        if (a[key] is None) != (b[key] is None):
            return False
        if a[key] is not None and (
            a[key].keys() != b[key].keys()
            or not all(torch.equal(a[key][name], b[key][name]) for name in a[key])
        ):
            return False
    return True


# --------------------------------------------------------------------------------- tests


def test_workflow_through_slurm_matches_local(slurm_cluster, slurm_run, local_run):
    run, watch = slurm_run.run, slurm_run.watch
    workdir = run.workdir

    # Every compute job went through sbatch, once: init_pool, and the train and query jobs of
    # every (method, stage).
    ctld_log = _ctld_log(slurm_cluster).read_text()
    for job in run.jobs:
        assert f"_slurm_rpc_submit_batch_job: JobId={job} " in ctld_log
    announced = re.findall(r"has been submitted with SLURM jobid (\d+)", run.output)
    assert sorted(announced, key=int) == run.jobs
    assert run.submitted() == _expected_chain(), run.describe()
    for record in run.records.values():
        assert record["JobState"] == "COMPLETED", record
        assert record["JobName"].startswith("tavaal_"), record

    # Local rules ran on this host: Snakemake printed them as local, none reached SLURM.
    assert set(re.findall(r"^localrule (\w+):$", run.output, re.M)) == LOCAL_RULES
    submitted_rules = {rule for rule, _ in run.submitted()}
    assert submitted_rules == GPU_RULES | CPU_SUBMITTED_RULES
    assert set(re.findall(r"^rule (\w+):$", run.output, re.M)) == submitted_rules
    for name in ("summary.parquet", "figures/accuracy.png", "tables/accuracy.csv"):
        assert (workdir / "results/tiny" / name).stat().st_size > 0, name

    # GPU rules asked for a GPU and their scripts saw the one SLURM gave them; the CPU-only
    # submitted rule asked for none and saw none.
    gpus = {str(index) for index in range(slurm_cluster.gpus)}
    for job, record in run.records.items():
        rule, wildcards = _rule_of(record)
        request = _gpu_request(record)
        seen = watch.script_cvd.get(job)
        assert seen, f"never saw the script of {rule} {wildcards} (job {job}) running"
        if rule in GPU_RULES:
            assert "gpu:1" in request, record
            assert seen <= gpus and watch.cvd[job] <= gpus, (rule, wildcards, watch.cvd[job])
        else:
            assert "gpu" not in request, record
            assert seen <= {None, ""} and watch.cvd[job] <= {None, ""}, (rule, watch.cvd[job])

    # The same results as the local run: identical index files, equal test accuracies.
    labeled = tiny_files(workdir, LABELED)
    assert len(labeled) == 1 + len(METHODS) * (STAGES - 1)
    assert labeled == tiny_files(local_run.workdir, LABELED)
    accuracies = _accuracies(workdir)
    assert len(accuracies) == len(RECIPES) + len(METHODS) * (STAGES - 1)
    assert accuracies == _accuracies(local_run.workdir)


def test_scancelled_job_is_rerun_and_nothing_partial_is_accepted(
    slurm_cluster, slurm_run, local_run, tmp_path
):
    """TA-VAAL's stage-0 training (its recipe's shared model) cancelled half-way (as at a
    wall-time limit or a preemption) leaves no output and its query does not start; the next
    invocation of the same command resumes it, and the index file that its query writes is
    the one of an uninterrupted run."""
    workdir = _copy_run(slurm_run.run.workdir, tmp_path / "wf")
    run_dir = workdir / RUN.format(method="tavaal")
    model_dir = workdir / STAGE0 / "ranking_ranker"
    local_model_dir = local_run.workdir / STAGE0 / "ranking_ranker"
    # Back to "the initial pool is drawn, nothing else of TA-VAAL's chain has run".
    shutil.rmtree(run_dir)
    shutil.rmtree(model_dir)
    shutil.rmtree(workdir / "logs/tiny/tavaal/seed0")
    train_log = workdir / "logs/tiny/stage0/seed0/ranking_ranker/train.log"
    train_log.unlink()
    target = RUN.format(method="tavaal") + "/stage1/labeled.parquet"
    command = _snakemake_command(
        workdir, [target], overlay=_overlay(tmp_path / "test-profile", retries=0)
    )
    env = _slurm_env(slurm_cluster)
    comment = "rule_train_initial_wildcards_tiny_0_ranking_ranker"
    cancelled: list[str] = []

    def epochs_done() -> int:
        found = re.findall(r"epoch (\d+)/", train_log.read_text()) if train_log.exists() else []
        return int(found[-1]) if found else 0

    def cancel_mid_training(process: subprocess.Popen) -> None:
        # After the first resumable save, well before the last epoch.
        job = _wait_running(
            slurm_cluster, process, comment, lambda: epochs_done() > CHECKPOINT_EVERY + 5
        )
        _scancel(slurm_cluster, job)
        cancelled.append(job)

    first = _run(workdir, command, env, slurm_cluster, during=cancel_mid_training)
    assert first.returncode != 0, first.describe()
    assert first.jobs == cancelled, first.describe()
    assert first.records[cancelled[0]]["JobState"] == "CANCELLED"
    assert epochs_done() < EPOCHS
    # The cancelled job's outputs do not exist, and the query that reads them never started.
    for path in (model_dir / "model.pt", model_dir / "metrics.json", run_dir):
        assert not path.exists(), path
    # It left its resumable state, under a name that no rule declares as an output (and the
    # temporary file of a save, if the cancel came in the middle of one).
    left = {p.name for p in model_dir.rglob("*") if p.is_file()}
    assert "model.pt.resume" in left
    assert all(name.endswith(".tmp") for name in left - {"model.pt.resume"}), left

    second = _check_ok(_run(workdir, command, env, slurm_cluster), slurm_cluster)
    assert second.submitted() == Counter(
        {("train_initial", "tiny_0_ranking_ranker"): 1, ("query_stage0", "tiny_tavaal_0"): 1}
    ), second.describe()
    log = train_log.read_text()
    resumed = re.search(r"resumed after epoch (\d+)", log)
    assert resumed and int(resumed.group(1)) % CHECKPOINT_EVERY == 0, log[:2000]
    assert not (model_dir / "model.pt.resume").exists()
    # Resumed training = uninterrupted training, so the query picked the same samples.
    assert _same_weights(model_dir / "model.pt", local_model_dir / "model.pt")
    assert tiny_files(workdir, LABELED) == tiny_files(local_run.workdir, LABELED)
    local_accuracies = _accuracies(local_run.workdir)
    assert _accuracies(workdir) == {
        path: local_accuracies[path]
        for path in local_accuracies
        if "/tavaal/" not in path  # its stage-1 model is not among the targets here
    }


def test_cancelled_job_is_retried_within_the_run(slurm_cluster, slurm_run, local_run, tmp_path):
    """The shipped `retries: 1`: a job that dies once is resubmitted, and the run succeeds."""
    workdir = _copy_run(slurm_run.run.workdir, tmp_path / "wf")
    target = RUN.format(method="random") + "/stage1/model.pt"
    command = _snakemake_command(
        workdir, ["all"], "--forcerun", target, overlay=_overlay(tmp_path / "test-profile")
    )
    comment = "rule_train_wildcards_tiny_random_0_1"
    cancelled: list[str] = []

    def cancel_once(process: subprocess.Popen) -> None:
        job = _wait_running(slurm_cluster, process, comment)
        _scancel(slurm_cluster, job)
        cancelled.append(job)

    run = _check_ok(
        _run(workdir, command, _slurm_env(slurm_cluster), slurm_cluster, during=cancel_once),
        slurm_cluster,
    )
    assert len(run.jobs) == 2 and run.jobs[0] == cancelled[0], run.describe()
    assert [run.records[job]["JobState"] for job in run.jobs] == ["CANCELLED", "COMPLETED"]
    assert run.submitted() == Counter({("train", "tiny_random_0_1"): 2})
    assert _accuracies(workdir) == _accuracies(local_run.workdir)


def test_forcerun_one_stage_reruns_only_it_and_dependents(slurm_cluster, slurm_run, tmp_path):
    """`--forcerun` of TA-VAAL's stage-0 query output: that query and the stage-1 training
    that reads it are resubmitted; the model it read, the other method and the other stages
    are untouched."""
    workdir = _copy_run(slurm_run.run.workdir, tmp_path / "wf")
    before = _result_files(workdir)
    tavaal = RUN.format(method="tavaal")
    target = f"{tavaal}/stage1/labeled.parquet"
    command = _snakemake_command(
        workdir, ["all"], "--forcerun", target, overlay=_overlay(tmp_path / "test-profile")
    )
    run = _check_ok(_run(workdir, command, _slurm_env(slurm_cluster), slurm_cluster))
    assert run.submitted() == Counter(
        {("query_stage0", "tiny_tavaal_0"): 1, ("train", "tiny_tavaal_0_1"): 1}
    ), run.describe()
    after = _result_files(workdir)
    assert after.keys() == before.keys()
    rewritten = {path for path in before if after[path][0] != before[path][0]}
    assert rewritten == {
        f"{tavaal}/stage0/scores.parquet",
        f"{tavaal}/stage1/labeled.parquet",
        f"{tavaal}/stage1/model.pt",
        f"{tavaal}/stage1/metrics.json",
    }
    for path in before.keys() - rewritten:
        assert after[path][1] == before[path][1], path
    # Recomputed from the same seeds: the new index file is byte-identical to the old one.
    assert after[target][1] == before[target][1]


# A train job on 2 data-parallel processes (train.processes, tavaal.distributed): digits_cnn
# has batch norm and dropout, so the job's model equals one process's only if the processes
# really train on shares of the same global batches.
DATA_PARALLEL = {
    "run_experiments": ["ddp"],
    "experiments": {
        "ddp": {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": ["random"],
            "seeds": [0],
            "initial_size": 301,
            "budget": 20,
            "stages": 2,
            "train": {"epochs": 3, "batch_size": 64, "dropout": 0.3, "processes": 2},
        }
    },
}


def test_two_process_training_job_through_slurm(slurm_cluster, tmp_path):
    """One train job with train.processes = 2 through profiles/slurm: one SLURM task holding
    2 GPUs (`--gpus=2`, 2 CPUs) whose script forks 2 processes; the node's GPUs are fake, so
    they meet with gloo on the CPU. Its weights equal one process's (test_distributed)."""
    import torch
    from test_distributed import TOLERANCE, max_difference

    from tavaal.config import experiment_from_config, merge_configs
    from tavaal.layout import run_file
    from tavaal.stage import run_train
    from tavaal.training import PLAIN

    workdir = workdir_with_config(tmp_path / "wf", DATA_PARALLEL, CONFIG)
    target = run_file("results", "ddp", "random", 0, 0, "model.pt")
    command = _snakemake_command(workdir, [str(target)], overlay=_overlay(tmp_path / "profile"))
    run = _check_ok(_run(workdir, command, _slurm_env(slurm_cluster), slurm_cluster), slurm_cluster)

    trains = [r for r in run.records.values() if _rule_of(r)[0] == "train_initial"]
    assert len(trains) == 1, run.describe()
    record = trains[0]
    assert record["JobState"] == "COMPLETED", record
    assert re.search(r"gpu:2\b", _gpu_request(record)), record
    assert (record["NumTasks"], record["NumCPUs"]) == ("1", "2"), record
    log = next(p for p in (workdir / "logs").rglob("train.log")).read_text()
    assert "training on 2 data-parallel processes" in log, log
    assert log.count("member 0 epoch 3/3") == 1, log  # rank 0 alone logs

    config = merge_configs(workdir / "config.yaml", workdir / CONFIG)
    config["experiments"]["ddp"]["train"]["processes"] = 1
    single = tmp_path / "single"
    run_train(
        experiment_from_config(config, "ddp"),
        PLAIN,
        0,
        0,
        workdir / run_file("results", "ddp", "random", 0, 0, "labeled.parquet"),
        workdir / "data",
        single / "model.pt",
        single / "metrics.json",
        device="cpu",
        log=lambda line: None,
    )
    one = torch.load(single / "model.pt", weights_only=True)["model"]
    two = torch.load(workdir / target, weights_only=True)["model"]
    assert max_difference(one, two) <= TOLERANCE
