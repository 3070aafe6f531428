"""profiles/slurm, run for real through sbatch on the throwaway cluster of slurm_cluster.py.

The workflows here are tiny stand-ins that reuse the real rule names (prepare_dataset,
init_pool, train, query_stage0, aggregate), so rule-name keys of a profile apply to them.
Each submitted rule records, from inside its SLURM job, the job id, CUDA_VISIBLE_DEVICES and
partition; the tests check those against what slurmctld says about the job.
The only settings added to the shipped profile are the status-check timing (the plugin's 40 s
default would make each run take minutes) and, in one test, the profile's commented examples.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

try:
    from slurm_cluster import (  # noqa: F401 (slurm_cluster_fixture is the pytest fixture)
        CONF_MARKER,
        SYSTEM_CONF,
        SlurmCluster,
        pid_alive,
        slurm_cluster_fixture,
    )
except ImportError:  # tests/ imported as a package (e.g. --import-mode=importlib)
    from tests.slurm_cluster import (  # noqa: F401
        CONF_MARKER,
        SYSTEM_CONF,
        SlurmCluster,
        pid_alive,
        slurm_cluster_fixture,
    )

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "local"

# Run inside each job: what SLURM gave it ("unset" tells an absent variable from an empty one).
REPORT_SH = """\
#!/bin/sh
{
  echo "job=${SLURM_JOB_ID-none}"
  echo "cvd=${CUDA_VISIBLE_DEVICES-unset}"
  echo "partition=${SLURM_JOB_PARTITION-none}"
} > "$1"
"""

WORKFLOW = """\
localrules: prepare_dataset, aggregate

rule aggregate:
    input: "init_pool.txt", "train.txt", "query.txt"
    output: "aggregate.txt"
    shell: "sh report.sh {output}"

rule prepare_dataset:
    output: "prepare_dataset.txt"
    shell: "sh report.sh {output}"

# CPU-only but deliberately not local here: it must reach SLURM without a GPU.
rule init_pool:
    input: "prepare_dataset.txt"
    output: "init_pool.txt"
    shell: "sh report.sh {output}"

rule train:
    input: "prepare_dataset.txt"
    output: "train.txt"
    resources: gpu=1
    shell: "sh report.sh {output}"

# Fails on its first attempt (after recording that attempt's job), succeeds on the retry.
rule query_stage0:
    input: "prepare_dataset.txt"
    output: "query.txt"
    resources: gpu=1
    shell:
        "if [ ! -e query.attempt1 ]; then sh report.sh query.attempt1; exit 3; fi; "
        "sh report.sh {output}"
"""

# The profile's commented examples: a CPU partition for a CPU rule, --gres instead of --gpus.
OVERRIDE_WORKFLOW = """\
rule all:
    input: "train.txt", "init_pool.txt"
    localrule: True

rule init_pool:
    output: "init_pool.txt"
    shell: "sh report.sh {output}"

rule train:
    output: "train.txt"
    resources: gpu=1
    shell: "sh report.sh {output}"
"""

# Two GPU rules that fail if they ever run at the same time, and a CPU rule.
LOCAL_WORKFLOW = """\
rule all:
    input: "train.txt", "query.txt", "init_pool.txt"

rule init_pool:
    output: "init_pool.txt"
    shell: "sleep 1; echo cpu > {output}"

rule train:
    output: "train.txt"
    resources: gpu=1
    shell: "mkdir gpu.busy && sleep 1 && rmdir gpu.busy && echo gpu > {output}"

rule query:
    output: "query.txt"
    resources: gpu=1
    shell: "mkdir gpu.busy && sleep 1 && rmdir gpu.busy && echo gpu > {output}"
"""

FAST_STATUS = {"slurm-init-seconds-before-status-checks": 2}


def _workflow(path: Path, snakefile: str, overlay: dict | None = None) -> Path | None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Snakefile").write_text(snakefile)
    (path / "report.sh").write_text(REPORT_SH)
    if overlay is None:
        return None
    profile = path.parent / f"{path.name}-test-profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(overlay))
    return profile


def _snakemake(workdir: Path, profiles: list[Path], env: dict[str, str]):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile")]
    command += ["--directory", str(workdir)]
    for profile in profiles:
        command += ["--profile", str(profile)]
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"snakemake failed ({result.returncode}):\n{log[-6000:]}"
    return log


def _report(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def _job(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    """slurmctld's record of a job (finished jobs stay for MinJobAge=300 s)."""
    line = cluster.run("scontrol", "show", "job", "--oneliner", job_id).stdout
    return dict(re.findall(r"(\w+)=(\S*)", line))


def _gpu_request(job: dict[str, str]) -> str:
    return job.get("TresPerJob", "") + job.get("TresPerNode", "")


def _sacct(cluster: SlurmCluster, job_ids: list[str]) -> dict[str, dict[str, str]]:
    """Accounting rows of the jobs; slurmctld sends them to slurmdbd a few seconds late."""
    fields = ["JobIDRaw", "State", "AllocTRES", "Partition"]
    command = ["sacct", "-X", "--parsable2", "--noheader", "-j", ",".join(job_ids)]
    command += ["-o", ",".join(fields)]
    deadline = time.monotonic() + 60
    while True:
        out = cluster.run(*command).stdout
        rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]
        by_job = {row["JobIDRaw"]: row for row in rows}
        if all(by_job.get(job, {}).get("State") in {"COMPLETED", "FAILED"} for job in job_ids):
            return by_job
        assert time.monotonic() < deadline, f"sacct did not report {job_ids}: {out}"
        time.sleep(1)


@pytest.mark.slurm
@pytest.mark.slow
def test_profile_runs_workflow_through_sbatch(slurm_cluster: SlurmCluster, tmp_path: Path):
    workdir = tmp_path / "wf"
    overlay = _workflow(workdir, WORKFLOW, FAST_STATUS)
    log = _snakemake(workdir, [SLURM_PROFILE, overlay], slurm_cluster.env())

    # Local rules ran on this host, not in a SLURM job.
    assert _report(workdir / "prepare_dataset.txt")["job"] == "none"
    assert _report(workdir / "aggregate.txt")["job"] == "none"

    train = _report(workdir / "train.txt")
    init_pool = _report(workdir / "init_pool.txt")
    first_query = _report(workdir / "query.attempt1")
    query = _report(workdir / "query.txt")
    job_ids = [r["job"] for r in (train, init_pool, first_query, query)]
    assert all(job.isdigit() for job in job_ids), job_ids
    assert len(set(job_ids)) == 4, job_ids

    # Every one of them was an sbatch submission of the plugin, named after the profile prefix.
    ctld_log = slurm_cluster.log_file("slurmctld").read_text()
    records = {job: _job(slurm_cluster, job) for job in job_ids}
    for job, record in records.items():
        assert f"_slurm_rpc_submit_batch_job: JobId={job} " in ctld_log
        assert record["JobName"].startswith("tavaal_"), record["JobName"]
        assert record["Partition"] == "gpu"
        assert record["MinMemoryNode"] == "4000M"  # the profile's default mem_mb
        assert record["TimeLimit"] == "01:00:00"  # the profile's default runtime

    # GPU rules got a GPU; the CPU rule none.
    for report in (train, first_query, query):
        assert report["cvd"] in {"0", "1"}, report
        assert "gpu:1" in _gpu_request(records[report["job"]])
    assert init_pool["cvd"] in {"unset", ""}, init_pool
    assert "gpu" not in _gpu_request(records[init_pool["job"]])
    assert records[train["job"]]["Comment"] == "rule_train"
    assert records[init_pool["job"]]["Comment"] == "rule_init_pool"

    # query failed once and went through on the retry, as a new SLURM job.
    assert records[first_query["job"]]["JobState"] == "FAILED"
    assert records[first_query["job"]]["Comment"] == "rule_query_stage0"
    for job in (train, init_pool, query):
        assert records[job["job"]]["JobState"] == "COMPLETED"

    # Status came from squeue, as the profile says; no fall-back to sacct.
    assert "Falling back to 'sacct'" not in log

    if slurm_cluster.accounting:
        rows = _sacct(slurm_cluster, job_ids)
        assert rows[first_query["job"]]["State"] == "FAILED"
        for report in (train, query):
            assert "gres/gpu=1" in rows[report["job"]]["AllocTRES"]
            assert rows[report["job"]]["State"] == "COMPLETED"
        assert "gres/gpu" not in rows[init_pool["job"]]["AllocTRES"]


@pytest.mark.slurm
@pytest.mark.slow
def test_profile_examples_gres_and_cpu_partition(slurm_cluster: SlurmCluster, tmp_path: Path):
    """The commented set-resources examples of profiles/slurm/config.yaml work as written."""
    overrides = {
        "train": {"gres": "gpu:1", "gpu": 0},
        "init_pool": {"slurm_partition": "cpu"},
    }
    workdir = tmp_path / "wf"
    overlay = _workflow(workdir, OVERRIDE_WORKFLOW, {**FAST_STATUS, "set-resources": overrides})
    _snakemake(workdir, [SLURM_PROFILE, overlay], slurm_cluster.env())

    train = _report(workdir / "train.txt")
    init_pool = _report(workdir / "init_pool.txt")
    train_job = _job(slurm_cluster, train["job"])
    init_pool_job = _job(slurm_cluster, init_pool["job"])
    # --gres=gpu:1 is per node (TresPerNode); --gpus=1 would be per job (TresPerJob).
    assert train_job.get("TresPerNode") == "gres:gpu:1", train_job
    assert "TresPerJob" not in train_job
    assert train["cvd"] in {"0", "1"}
    assert init_pool_job["Partition"] == init_pool["partition"] == "cpu"
    assert init_pool["cvd"] in {"unset", ""}
    assert "gpu" not in _gpu_request(init_pool_job)


class _Boom(Exception):
    pass


@pytest.mark.slurm
@pytest.mark.slow
def test_stop_ends_exactly_the_started_daemons(slurm_cluster: SlurmCluster):
    """What the fixture's teardown does (stop), checked by PID; also when the body raises.
    Restarts the cluster afterwards for any later test."""
    # A bystander that a `pkill slurmd` would hit but a stop by PID must not.
    decoy = subprocess.Popen(["bash", "-c", "exec -a slurmd sleep 300"])
    try:
        before = slurm_cluster.pids
        assert {"munged", "slurmctld", "slurmd"} <= set(before)
        assert all(pid_alive(pid) for pid in before.values())

        slurm_cluster.stop()
        assert [name for name, pid in before.items() if pid_alive(pid)] == []
        assert slurm_cluster.last_pids == before
        assert not SYSTEM_CONF.exists() or CONF_MARKER not in SYSTEM_CONF.read_text()

        with pytest.raises(_Boom):
            with slurm_cluster:
                during = slurm_cluster.pids
                assert during.keys() == before.keys()
                assert all(pid_alive(pid) for pid in during.values())
                raise _Boom
        assert [name for name, pid in during.items() if pid_alive(pid)] == []
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()
        slurm_cluster.start()


def test_local_profile_runs_one_gpu_job_at_a_time(tmp_path: Path):
    """profiles/local: `resources: gpu: 1` keeps the two GPU rules apart (each would fail on
    finding the other's gpu.busy); no cluster involved."""
    workdir = tmp_path / "wf"
    _workflow(workdir, LOCAL_WORKFLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    _snakemake(workdir, [LOCAL_PROFILE], env)
    assert (workdir / "train.txt").read_text() == "gpu\n"
    assert (workdir / "query.txt").read_text() == "gpu\n"
    assert (workdir / "init_pool.txt").read_text() == "cpu\n"
