"""Query cost of each strategy, with a QueryContext built the way `tavaal.stage.run_query`
builds it, on untrained task models shaped as the method's checkpoint would hold them."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tavaal.config import ExperimentConfig
from tavaal.data import DatasetInfo
from tavaal.inference import forward_pool
from tavaal.models import build_ranker
from tavaal.pool import candidate_subset, initial_indices
from tavaal.seeding import seed_everything
from tavaal.strategies import QueryContext, get_strategy, strategy_class
from tavaal.training import TrainedModels, build_model, ensemble_members

from .adversary import adversary_numbers
from .memory import MemoryProbe
from .runtime import load1, log, sync
from .settings import REFERENCE_CANDIDATES, Profile, experiment
from .synthetic import synthetic_dataset


def untrained_models(exp: ExperimentConfig, method: str, info: DatasetInfo, device):
    """What load_task_models returns for `method`, with freshly initialised weights: the
    experiment's train.dropout, the method's recipe (ensemble size, Ranker), in eval mode."""
    strategy = strategy_class(method)
    if not strategy.uses_task_model:
        return None
    models = []
    for _ in range(ensemble_members(exp, strategy.recipe)):
        models.append(build_model(exp, info).to(device).eval())
    ranker = None
    if strategy.recipe.ranker_loss is not None:
        ranker = build_ranker(models[0], info.input_shape, hidden=exp.ranker.hidden).to(device)
        ranker.eval()
    return TrainedModels(models=models, ranker=ranker)


def query_problem(settings: dict, exp: ExperimentConfig) -> dict:
    """Synthetic pool with the labeled set, unlabeled pool and candidates of run_query."""
    profile: Profile = settings["profile"]
    # A pool larger than the candidates, so candidate_subset draws a real subset.
    n_train = settings["labeled"] + settings["candidates"] + max(1, settings["candidates"] // 2)
    dataset = synthetic_dataset(profile, n_train, profile.test_images, settings["seed"], "query")
    seed, stage = settings["seed"], 0
    labeled = initial_indices(n_train, exp.initial_size, seed)
    unlabeled = np.setdiff1d(np.arange(n_train, dtype=np.int64), labeled)
    candidates = candidate_subset(unlabeled, exp.subset_size, seed, stage)
    return {
        "dataset": dataset,
        "labeled": labeled,
        "unlabeled": unlabeled,
        "candidates": candidates,
    }


def bench_query_method(
    settings: dict, exp: ExperimentConfig, problem: dict, method: str, device, workdir: Path
) -> dict:
    seed, stage = settings["seed"], 0
    dataset = problem["dataset"]
    strategy = get_strategy(method)
    seed_everything(seed, stage, "bench/models")
    trained = untrained_models(exp, method, dataset.info, device)
    lines: list[tuple[float, str]] = []
    verbose = settings["verbose"]

    def ctx_log(line: str) -> None:
        lines.append((time.perf_counter(), line))
        if verbose:
            log(f"  {line}")

    # As run_query: seed, then the context with the stage's resume path and checkpoint period.
    seed_everything(seed, stage, "query")
    ctx = QueryContext(
        experiment=exp,
        method=method,
        seed=seed,
        stage=stage,
        dataset=dataset,
        labeled=np.sort(problem["labeled"]),
        candidates=problem["candidates"],
        unlabeled=problem["unlabeled"],
        budget=exp.budget,
        device=device,
        models=trained,
        log=ctx_log,
        resume_path=workdir / f"{method}-query{stage}.resume",
        checkpoint_every=exp.vae.checkpoint_every,
    )
    with MemoryProbe(device) as probe:
        started = time.perf_counter()
        result = strategy.query(ctx)
        sync(device)
        seconds = time.perf_counter() - started
    if len(result.chosen) != exp.budget:
        raise RuntimeError(f"{method} chose {len(result.chosen)} samples, budget {exp.budget}")

    factor = REFERENCE_CANDIDATES / settings["candidates"]
    out = {
        "candidates": len(ctx.candidates),
        "labeled": len(ctx.labeled),
        "budget": exp.budget,
        "task_models": len(trained.models) if trained else 0,
        "ranker": bool(trained and trained.ranker is not None),
        "forward_passes_per_candidate": _passes(exp, type(strategy), trained),
        # Built before the measurement: in peak_rss_mb / peak_gpu_mb, not in the increases.
        "task_model_weights_mb": round(_weights_mb(trained), 1),
        "measured_seconds": round(seconds, 4),
        "extrapolated_seconds_per_10k": round(seconds * factor, 3),
        **probe.result,
        "load1_after": load1(),
    }
    diagnostics = result.diagnostics
    variant = type(strategy).adversary
    if variant is not None:
        out.update(
            adversary_numbers(settings, exp, seconds, diagnostics, lines, started, factor, variant)
        )
    return out


def _weights_mb(trained: TrainedModels | None) -> float:
    if trained is None:
        return 0.0
    modules = [*trained.models, *([trained.ranker] if trained.ranker is not None else [])]
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    return sum(t.numel() * t.element_size() for t in tensors) / 1024**2


def _passes(exp: ExperimentConfig, strategy_cls, trained) -> int:
    """Task-model forward passes over each candidate (MC-dropout: T; ensemble: M)."""
    if trained is None:
        return 0
    if strategy_cls.needs_dropout:
        return exp.query.mc_samples
    return len(trained.models)


def warm_up_inference(exp: ExperimentConfig, problem: dict, device) -> None:
    """One untimed batch through a task model, so kernel setup is not billed to the first method."""
    dataset = problem["dataset"]
    model = build_model(exp, dataset.info)
    batch = problem["candidates"][: exp.query.inference_batch_size]
    forward_pool(
        model.to(device),
        dataset.x_train,
        batch,
        dataset.info,
        device,
        exp.query.inference_batch_size,
    )
    sync(device)


def bench_query(settings: dict, device: torch.device) -> dict:
    methods = settings["methods"]
    exp = experiment(settings, methods)
    problem = query_problem(settings, exp)
    warm_up_inference(exp, problem, device)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tavaal-bench-") as tmp:
        for method in methods:
            log(f"query: {method}")
            results[method] = bench_query_method(settings, exp, problem, method, device, Path(tmp))
            extra = ""
            if "vae_seconds_per_iteration" in results[method]:
                extra = f" ({results[method]['vae_seconds_per_iteration']:.2f} s/VAE iteration)"
            log(f"query: {method} {results[method]['measured_seconds']:.2f} s{extra}")
    return results
