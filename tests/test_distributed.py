"""Data-parallel training (`train.processes`, tavaal.distributed) on the CPU with gloo: two
processes give the weights of one process training on the same global batches, up to the
order of floating-point sums (TOLERANCE)."""

import copy
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import yaml

import tavaal.training as training
from tavaal.config import ExperimentConfig
from tavaal.data import load_dataset
from tavaal.distributed import run_processes
from tavaal.errors import ConfigError
from tavaal.pool import initial_indices
from tavaal.stage import run_init_pool, run_query, run_train
from tavaal.training import (
    ENSEMBLE,
    MARGIN_RANKER,
    PLAIN,
    RANKING_RANKER,
    train_task_learner,
)

REPO = Path(__file__).resolve().parents[1]
# Largest absolute difference allowed between a weight trained by 2 processes and by 1; the
# measured differences are around 1e-7 (float32 sums in another order).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", tmp_path_factory.mktemp("data"))


def digits_exp(processes=1, **train):
    """digits_cnn has batch norm; dropout, augmentation and an uneven last batch (301 labels
    in batches of 64: 45 rows, 23 + 22 on two ranks) exercise the rest of the equality."""
    settings = {
        "epochs": 3,
        "batch_size": 64,
        "lr": 0.05,
        "milestones": [2],
        "dropout": 0.3,
        "augment": True,
        "crop_padding": 1,
        "processes": processes,
    }
    settings.update(train)
    return ExperimentConfig.from_dict(
        "d",
        {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": ["random", "coreset", "ensemble_varr"],
            "initial_size": 301,
            "budget": 20,
            "train": settings,
            # The ranker's gradient reaches the backbone in epochs 1-2, then stops.
            "ranker": {"detach_epoch": 2},
            "query": {"ensemble_size": 2},
        },
    )


def labeled(dataset, exp):
    idx = initial_indices(dataset.info.n_train, exp.initial_size, 0)
    return idx, dataset.y_train[idx]


def train_parallel(exp, recipe, dataset, out, processes=2, **kwargs):
    """Rank 0's checkpoint of a `processes`-process training, saved to `out` and read back."""
    idx, labels = labeled(dataset, exp)

    def work(parallel):
        trained = train_task_learner(
            exp,
            recipe,
            dataset,
            idx,
            labels,
            0,
            0,
            log=lambda line: None,
            parallel=parallel,
            **kwargs,
        )
        if parallel.writes:
            torch.save(trained[0], out)

    run_processes(processes, work, "cpu")
    return torch.load(out, weights_only=True)


def train_single(exp, recipe, dataset, **kwargs):
    idx, labels = labeled(dataset, exp)
    return train_task_learner(
        exp, recipe, dataset, idx, labels, 0, 0, "cpu", lambda line: None, **kwargs
    )[0]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(
        (a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a
    )


def weights_of(checkpoint):
    parts = [checkpoint["model"], *checkpoint["ensemble_members"]]
    if checkpoint["ranker"] is not None:
        parts.append(checkpoint["ranker"])
    return {f"{i}.{k}": v for i, part in enumerate(parts) for k, v in part.items()}


@pytest.mark.parametrize(
    "recipe,validated",
    [
        (PLAIN, False),
        (ENSEMBLE, False),
        (MARGIN_RANKER, False),
        (RANKING_RANKER, False),
        (PLAIN, True),
    ],
    ids=["plain", "ensemble", "margin_ranker", "ranking_ranker", "plain-validated"],
)
def test_two_processes_train_the_weights_of_one(digits, tmp_path, recipe, validated):
    exp = digits_exp()
    kwargs = {}
    if validated:  # model selection on a held-out split, scored in shares by the ranks
        exp = digits_exp(validation_size=150)
        held_out = np.setdiff1d(np.arange(digits.info.n_train), labeled(digits, exp)[0])[:150]
        kwargs["validation"] = (held_out, digits.y_train[held_out])
    single = train_single(exp, recipe, digits, **kwargs)
    double = train_parallel(exp, recipe, digits, tmp_path / "model.pt", **kwargs)
    difference = max_difference(weights_of(single), weights_of(double))
    print(f"{recipe.name}: max |2 processes - 1 process| = {difference:.3g}")
    assert difference <= TOLERANCE
    # The batch-norm running statistics and counters are the global batch's too.
    bn = "conv1.1.num_batches_tracked"
    assert int(double["model"][bn]) == int(single["model"][bn]) > 0
    # Not trivially equal: the weights moved from their initialisation.
    assert (
        max_difference(single["model"], train_single(digits_exp(epochs=1), recipe, digits)["model"])
        > 1e-2
    )


def test_two_processes_train_the_strong_recipe_of_one(digits, tmp_path):
    """RandAugment's draws are the global batch's, and SWA's batch-norm pass runs on shares.
    At a tenth of the other tests' learning rate: RandAugment's harder images make SGD at 0.05
    grow the reordering's last-bit differences to 4e-5 in 3 epochs (5e-7 at 0.005)."""
    exp = digits_exp(randaugment_ops=2, swa_start=1, lr=0.005)
    single = train_single(exp, RANKING_RANKER, digits)
    double = train_parallel(exp, RANKING_RANKER, digits, tmp_path / "model.pt")
    difference = max_difference(weights_of(single), weights_of(double))
    print(f"strong recipe: max |2 processes - 1 process| = {difference:.3g}")
    assert difference <= TOLERANCE
    assert (
        max_difference(single["model"], train_single(digits_exp(), PLAIN, digits)["model"]) > 1e-2
    )


class Interrupted(Exception):
    pass


def interrupt_after(epoch, monkeypatch):
    real_save = training._save_resume

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == epoch:
            raise Interrupted(f"interrupted after epoch {epoch}")

    monkeypatch.setattr(training, "_save_resume", save_then_die)
    return real_save


@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_resume_state_continues_on_any_number_of_processes(
    digits, tmp_path, monkeypatch, first, then
):
    exp = digits_exp(epochs=4, checkpoint_every=1)
    resume = tmp_path / "model.pt.resume"
    uninterrupted = train_single(exp, PLAIN, digits)

    real_save = interrupt_after(2, monkeypatch)
    if first == 2:
        with pytest.raises(RuntimeError, match="(?s)rank 0 of 2 failed.*interrupted after epoch 2"):
            train_parallel(exp, PLAIN, digits, tmp_path / "first.pt", resume_path=resume)
    else:
        with pytest.raises(Interrupted):
            train_single(exp, PLAIN, digits, resume_path=resume)
    assert torch.load(resume, weights_only=True)["epoch"] == 2
    monkeypatch.setattr(training, "_save_resume", real_save)

    if then == 2:
        resumed = train_parallel(exp, PLAIN, digits, tmp_path / "then.pt", resume_path=resume)
    else:
        resumed = train_single(exp, PLAIN, digits, resume_path=resume)
    assert resumed["epoch"] == 4
    assert max_difference(uninterrupted["model"], resumed["model"]) <= TOLERANCE


def run_stage0(exp, data_dir, out):
    run_init_pool(exp, 0, data_dir, out / "stage0" / "labeled.parquet", log=lambda line: None)
    for recipe in (PLAIN, ENSEMBLE):
        run_train(
            exp,
            recipe,
            0,
            0,
            out / "stage0" / "labeled.parquet",
            data_dir,
            out / recipe.name / "model.pt",
            out / recipe.name / "metrics.json",
            device="cpu",
            log=lambda line: None,
        )
    for method in ("random", "coreset", "ensemble_varr"):
        recipe = ENSEMBLE if method == "ensemble_varr" else PLAIN
        run_query(
            exp,
            method,
            0,
            0,
            out / "stage0" / "labeled.parquet",
            None if method == "random" else out / recipe.name / "model.pt",
            data_dir,
            out / method / "labeled.parquet",
            out / method / "scores.parquet",
            device="cpu",
            log=lambda line: None,
        )


@pytest.mark.slow
def test_workflow_stage_with_two_processes_writes_the_same_index_files(digits, tmp_path):
    data_dir = tmp_path / "data"
    load_dataset("digits", data_dir)
    run_stage0(digits_exp(processes=1), data_dir, tmp_path / "one")
    run_stage0(digits_exp(processes=2), data_dir, tmp_path / "two")
    # Random and k-center picks (whose scores are distances of the picks, chosen in order)
    # are the same bytes; the ensemble's picks and labels are the same, and its scores (vote
    # ratio plus a tie-break by the mean entropy of the members) equal up to float rounding.
    for method in ("random", "coreset"):
        one = (tmp_path / "one" / method / "labeled.parquet").read_bytes()
        assert one == (tmp_path / "two" / method / "labeled.parquet").read_bytes(), method
    one = pd.read_parquet(tmp_path / "one" / "ensemble_varr" / "labeled.parquet")
    two = pd.read_parquet(tmp_path / "two" / "ensemble_varr" / "labeled.parquet")
    pd.testing.assert_frame_equal(one.drop(columns="score"), two.drop(columns="score"))
    assert np.allclose(one["score"], two["score"], rtol=0, atol=TOLERANCE, equal_nan=True)
    for recipe in (PLAIN, ENSEMBLE):
        one = torch.load(tmp_path / "one" / recipe.name / "model.pt", weights_only=True)
        two = torch.load(tmp_path / "two" / recipe.name / "model.pt", weights_only=True)
        assert two["settings_hash"] == one["settings_hash"]
        assert max_difference(weights_of(one), weights_of(two)) <= TOLERANCE


def test_a_failing_rank_ends_all_of_them_with_its_error():
    def work(parallel):
        if parallel.rank == 1:
            raise ValueError("rank one cannot read its shard")
        dist.all_reduce(torch.ones(1))  # rank 0 waits in a collective rank 1 never joins

    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="(?s)rank 1 of 2 failed.*cannot read its shard"):
        run_processes(2, work, "cpu")
    print(f"failing rank reported after {time.perf_counter() - started:.1f}s")


def test_a_killed_rank_ends_the_job_too():
    """The out-of-memory killer's SIGKILL leaves no traceback: the status names the rank."""

    def work(parallel):
        if parallel.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        dist.all_reduce(torch.ones(1))

    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="rank 1 of 2 exited with status -9 .signal SIGKILL"):
        run_processes(2, work, "cpu")
    print(f"killed rank reported after {time.perf_counter() - started:.1f}s")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_workers_end_when_the_job_process_is_killed(tmp_path):
    """SIGKILL of the job's process (a time limit, the OOM killer) ends its workers too, so
    none keeps its GPU: they asked the kernel for it (PR_SET_PDEATHSIG). The workers ignore
    SIGINT here, as one busy in C++ (a GPU kernel, a blocked collective) runs no handler for
    it: torch's own request, SIGINT at the parent's death, would leave them running."""
    script = (
        "import os, signal, time\n"
        "from tavaal.distributed import run_processes\n"
        "def work(parallel):\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"    path = os.path.join({str(tmp_path)!r}, f'rank{{parallel.rank}}')\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(600)\n"
        "run_processes(2, work, 'cpu')\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("rank*"))) < 2 or any(
            not p.read_text() for p in tmp_path.glob("rank*")
        ):
            assert job.poll() is None and time.monotonic() < deadline, "workers never started"
            time.sleep(0.1)
        workers = [int(p.read_text()) for p in tmp_path.glob("rank*")]
        assert all(_alive(pid) for pid in workers)
    finally:
        job.kill()
        job.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def test_segmentation_on_several_processes_is_refused_before_any_job():
    from tavaal.validation import check_experiment

    check_experiment(dataclasses.replace(digits_exp(processes=2), methods=("random", "tavaal")))
    segmentation = ExperimentConfig.from_dict(
        "s",
        {
            "dataset": "seg_shapes",
            "model": "drn_d_22_slim",
            "methods": ["random"],
            "initial_size": 40,
            "budget": 40,
            "train": {"processes": 2},
        },
    )
    with pytest.raises(
        ConfigError,
        match=r"experiments\.s\.train\.processes: 2 processes are supported for classification",
    ):
        check_experiment(segmentation)
    with pytest.raises(ConfigError, match=r"d\.train\.processes: must be >= 1"):
        digits_exp(processes=0)


def test_processes_are_not_part_of_the_training_settings():
    assert training.training_hash(digits_exp(processes=4), PLAIN) == training.training_hash(
        digits_exp(processes=1), PLAIN
    )
    assert np.array_equal(
        digits_exp(processes=3).train_settings().keys() ^ digits_exp().train_settings().keys(),
        set(),
    )


WORKFLOW_DIGITS = {
    "run_experiments": ["ddp"],
    "device": "cpu",
    "experiments": {
        "ddp": {
            "dataset": "digits",
            "model": "digits_cnn",
            "methods": ["coreset"],
            "seeds": [0],
            "initial_size": 301,
            "budget": 20,
            "stages": 2,
            "subset_size": 200,
            "train": {"epochs": 2, "batch_size": 64, "dropout": 0.3, "crop_padding": 1},
        }
    },
}


def workflow_with_processes(tmp_path, processes):
    from test_workflow import workdir_with_config

    extra = copy.deepcopy(WORKFLOW_DIGITS)
    extra["experiments"]["ddp"]["train"]["processes"] = processes
    return workdir_with_config(tmp_path / f"p{processes}", extra)


@pytest.mark.slow
def test_train_rules_ask_for_one_gpu_per_process(tmp_path):
    from test_workflow import planned_jobs

    work = workflow_with_processes(tmp_path, 2)
    jobs = planned_jobs(work, "--configfile", str(work / "extra.yaml"), "--cores", "4")
    trains = [job for job in jobs if job["rule"] in ("train_initial", "train")]
    assert trains
    for job in trains:
        assert "gpu=2" in job["resources"], job
        assert job["threads"] == "2", job  # digits: 1 CPU per process


@pytest.mark.slow
def test_workflow_train_job_on_two_processes_gives_the_same_query(tmp_path):
    """The real train job (workflow_scripts/train.py) on 2 processes, then the query job (one
    process): the same next labeled set, byte for byte, as with 1 process."""
    from test_workflow import snakemake

    from tavaal.layout import run_file

    written = {}
    for processes in (1, 2):
        work = workflow_with_processes(tmp_path, processes)
        target = run_file("results", "ddp", "coreset", 0, 1, "labeled.parquet")
        snakemake(work, "--configfile", str(work / "extra.yaml"), "--cores", "2", str(target))
        written[processes] = (work / target).read_bytes()
        log = next((work / "logs").rglob("train.log")).read_text()
        assert (f"training on {processes} data-parallel processes" in log) == (processes > 1)
        assert log.count("member 0 epoch 2/2") == 1  # rank 0 alone logs
    assert written[1] == written[2]


def test_estimates_model_the_wall_clock_of_n_processes():
    """compute / N plus a ring all-reduce of the weights every step (tavaal.resources): a
    model, checked here against its own formula on the ImageNet preset's last training job."""
    from tavaal.config import experiment_from_config, merge_configs
    from tavaal.resources import (
        ALL_REDUCE_BYTES_PER_SECOND,
        PROCESS_GROUP_SECONDS,
        _model_facts,
        experiment_estimate,
        longest_training_hours,
        train_estimate,
    )

    config = merge_configs(REPO / "config.yaml", REPO / "presets" / "vaal_imagenet.yaml")
    exp = experiment_from_config(config, "vaal_imagenet")
    assert exp.train.processes == 4
    one, two, four = (train_estimate(exp, PLAIN, 4, "cuda", n) for n in (1, 2, 4))
    steps = exp.train.epochs * -(-exp.labeled_size(4) // exp.train.batch_size)
    weights = 4 * _model_facts(exp.model, (3, 224, 224))[0]  # float32 bytes

    def all_reduce(n):  # a ring all-reduce of the weights every step
        return steps * 2 * (n - 1) / n * weights / ALL_REDUCE_BYTES_PER_SECOND["gpu"]

    # T, one GPU's training compute, from 2 processes: s1 - s2 = T / 2 - all-reduce - start.
    compute = 2 * (one.seconds - two.seconds + all_reduce(2) + PROCESS_GROUP_SECONDS)
    assert one.seconds - four.seconds == pytest.approx(
        3 / 4 * compute - all_reduce(4) - PROCESS_GROUP_SECONDS, rel=1e-9
    )
    assert 2.5 < one.seconds / four.seconds < 4  # ~3.1: VGG16's 553 MB of weights cost
    assert four.mem_mb > 3 * one.mem_mb  # every process holds its own copy
    walls = [longest_training_hours(exp, "cuda", n) for n in (1, 4, 8)]
    assert walls[0] > walls[1] > walls[2]
    # GPU hours count the 4 GPUs a training job holds.
    single = dataclasses.replace(exp, train=dataclasses.replace(exp.train, processes=1))
    assert experiment_estimate(exp, "cuda").hours > experiment_estimate(single, "cuda").hours
    # Segmentation trains on one process: no 4 or 8 GPU figure.
    cityscapes = experiment_from_config(
        merge_configs(REPO / "config.yaml", REPO / "presets" / "vaal_cityscapes.yaml"),
        "vaal_cityscapes",
    )
    assert longest_training_hours(cityscapes, "cuda", 4) is None


def test_estimate_command_shows_the_longest_training_job_on_1_4_8_gpus(capsys):
    from tavaal.cli import main

    preset = str(REPO / "presets" / "vaal_imagenet.yaml")
    assert main(["estimate", str(REPO / "config.yaml"), preset, "--device", "cuda"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("longest training job (h) on 1/4/8 GPUs")
    walls = [float(h) for h in out[1].split()[-1].split("/")]
    assert walls[0] > walls[1] > walls[2] > 0


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="needs fewer than 2 GPUs")
def test_a_train_job_whose_processes_fail_exits_non_zero_with_their_error(tmp_path):
    """device: cuda with 2 processes on a machine with fewer GPUs: every rank refuses, and the
    job (workflow_scripts/train.py) ends non-zero with that error and a traceback in its log."""
    from test_workflow import snakemake

    from tavaal.layout import run_file

    work = workflow_with_processes(tmp_path, 2)
    extra = yaml.safe_load((work / "extra.yaml").read_text())
    (work / "extra.yaml").write_text(yaml.safe_dump({**extra, "device": "cuda"}))
    target = run_file("results", "ddp", "coreset", 0, 0, "model.pt")
    args = ("--configfile", str(work / "extra.yaml"), "--cores", "2", str(target))
    result = snakemake(work, *args, check=False)
    assert result.returncode != 0
    log = next((work / "logs").rglob("train.log")).read_text()
    assert re.search(r"rank \d of 2 failed", log), log
    assert "train.processes: 2 processes need 2 GPUs, this job sees" in log, log
    assert "Traceback" in log
    assert not (work / target).exists()


def test_presets_cost_table_shows_the_longest_training_job_on_1_4_8_gpus():
    from tavaal.config import merge_configs
    from tavaal.resources import longest_training_text

    page = (REPO / "docs" / "presets.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d./-]+) \| [\d.]+ \|$", page, re.M)
    shown = {name: text for name, text in rows if (REPO / f"presets/{name}.yaml").exists()}
    assert {"vaal_imagenet", "vaal_caltech256", "vaal_cityscapes"} <= set(shown)
    for name, text in shown.items():
        config = merge_configs(REPO / "config.yaml", REPO / f"presets/{name}.yaml")
        experiments = config["run_experiments"]
        exps = [ExperimentConfig.from_dict(e, config["experiments"][e]) for e in experiments]
        assert text == longest_training_text(*exps), name
