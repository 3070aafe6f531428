"""Training throughput of the task learner: tavaal's `train_task_learner` ("ours") against the
official codes' DataLoader + PIL loop ("reference"), repeated and interleaved."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from tavaal.config import ExperimentConfig
from tavaal.training import PLAIN, build_model, train_task_learner

from .data_path import bench_data_path
from .memory import MemoryProbe, worker_peak_rss_mb
from .reference import reference_dataset, reference_loader
from .runtime import library_log, load1, log, sync
from .settings import Profile, experiment
from .synthetic import synthetic_dataset


def bench_train_ours(
    settings: dict, exp: ExperimentConfig, device: torch.device, warm_up: bool = True
) -> dict:
    """Throughput of the real train_task_learner (the plain recipe: one model, no ranker)."""
    profile: Profile = settings["profile"]
    n = settings["train_images"]
    dataset = synthetic_dataset(profile, n, profile.test_images, settings["seed"], "train")
    indices = np.arange(n, dtype=np.int64)
    labels = np.asarray(dataset.y_train, dtype=np.int64)
    quiet = library_log(settings)

    if warm_up:
        # Not timed: one short call on the first batches, same shapes and kernels.
        warm = min(n, profile.warmup_batches * profile.batch_size)
        warm_exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, epochs=1))
        train_task_learner(
            warm_exp,
            PLAIN,
            dataset,
            indices[:warm],
            labels[:warm],
            settings["seed"],
            0,
            device,
            quiet,
        )
    with MemoryProbe(device) as probe:
        _, metrics = train_task_learner(
            exp, PLAIN, dataset, indices, labels, settings["seed"], 1, device, quiet
        )
    seconds = float(metrics["train_seconds"])
    images_per_second = float(metrics["images_per_second"])
    # train_task_learner drops a final batch of one sample (batch norm needs two).
    per_epoch = n - 1 if n % profile.batch_size == 1 and n > profile.batch_size else n
    return {
        "path": "tavaal.training.train_task_learner: uint8 train set on the device, randperm "
        "batches, augment_images + to_tensor_batch on the device",
        "images_per_second": images_per_second,
        "seconds": seconds,
        "images": per_epoch * exp.train.epochs,
        "epochs": exp.train.epochs,
        **probe.result,
        "load1_after": load1(),
    }


def bench_train_reference(
    settings: dict, exp: ExperimentConfig, device: torch.device, workers: int, warm_up: bool = True
) -> dict:
    """The official codes' loop: DataLoader + SubsetRandomSampler + per-sample PIL transforms."""
    profile: Profile = settings["profile"]
    n = settings["train_images"]
    dataset = synthetic_dataset(profile, n, profile.test_images, settings["seed"], "train")
    data = reference_dataset(dataset, profile, exp)
    cfg = exp.train

    def loader(indices) -> torch.utils.data.DataLoader:
        return reference_loader(data, indices, cfg.batch_size, workers, device)

    def fresh_model():
        model = build_model(exp, dataset.info).to(device)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
        return model, optimizer, scheduler

    def step(model, optimizer, inputs, targets) -> None:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        loss = F.cross_entropy(model(inputs).logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if warm_up:
        # Not timed: a throwaway model on the first batches, workers started and stopped.
        warm = min(n, profile.warmup_batches * cfg.batch_size)
        model, optimizer, _ = fresh_model()
        model.train()
        for inputs, targets in loader(range(warm)):
            step(model, optimizer, inputs, targets)
        del model, optimizer
        sync(device)

    seen = 0
    with MemoryProbe(device) as probe:
        started = time.perf_counter()
        # As train_task_learner's timed region: model and optimizer built inside it.
        model, optimizer, scheduler = fresh_model()
        train_loader = loader(range(n))
        for _epoch in range(cfg.epochs):
            model.train()
            for inputs, targets in train_loader:
                step(model, optimizer, inputs, targets)
                seen += len(targets)
            scheduler.step()
        sync(device)
        seconds = time.perf_counter() - started
    result = {
        "path": "torch DataLoader over PIL images with per-sample torchvision transforms "
        "(RandomCrop(pad 4), RandomHorizontalFlip, ToTensor, Normalize)",
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "images_per_second": round(seen / seconds, 1),
        "seconds": round(seconds, 3),
        "images": seen,
        "epochs": cfg.epochs,
        **probe.result,
        "load1_after": load1(),
    }
    if workers > 0:
        # Worker processes are not in this process's RSS; this is the largest one's lifetime peak.
        result["worker_peak_rss_mb"] = worker_peak_rss_mb()
    return result


def _best_of(runs: list[dict]) -> dict:
    """The fastest of repeated runs (least disturbed by other processes), with all rates kept."""
    best = dict(max(runs, key=lambda row: row["images_per_second"]))
    rates = [row["images_per_second"] for row in runs]
    best["repeats"] = len(runs)
    best["images_per_second_runs"] = rates
    best["images_per_second_median"] = round(float(np.median(rates)), 1)
    for key in ("peak_rss_mb", "peak_rss_increase_mb", "peak_gpu_mb", "peak_gpu_increase_mb"):
        if key in best:
            best[key] = max(row[key] for row in runs)
    return best


def bench_train(settings: dict, device: torch.device) -> dict:
    exp = experiment(settings, ["random"])
    repeats = settings["repeats"]
    keys = [f"num_workers_{w}" for w in settings["ref_workers"]]
    runs: dict[str, list[dict]] = {"ours": [], **{key: [] for key in keys}}
    # Interleaved repeats, so a burst of load from other processes hits every path alike.
    for repeat in range(repeats):
        first_round = repeat == 0
        log(
            f"train {repeat + 1}/{repeats}: ours, {settings['train_images']} images x "
            f"{exp.train.epochs} epochs"
        )
        runs["ours"].append(bench_train_ours(settings, exp, device, warm_up=first_round))
        log(f"train {repeat + 1}/{repeats}: ours {runs['ours'][-1]['images_per_second']:.1f} img/s")
        for workers, key in zip(settings["ref_workers"], keys, strict=True):
            ref = bench_train_reference(settings, exp, device, workers, warm_up=first_round)
            runs[key].append(ref)
            log(
                f"train {repeat + 1}/{repeats}: reference num_workers={workers} "
                f"{ref['images_per_second']:.1f} img/s"
            )
    ours = _best_of(runs["ours"])
    references = {}
    for key in keys:
        ref = _best_of(runs[key])
        ref["speedup_ours_over_this"] = round(
            ours["images_per_second"] / ref["images_per_second"], 3
        )
        references[key] = ref
    first = references[f"num_workers_{settings['ref_workers'][0]}"]
    log("train: data paths alone (no model)")
    data_path = bench_data_path(settings, exp, device)
    log(f"train: data paths alone, speed-up {data_path['speedup']:.1f}x")
    return {
        "model": exp.model,
        "input_shape": list(settings["profile"].input_shape),
        "images": settings["train_images"],
        "epochs": exp.train.epochs,
        "batch_size": exp.train.batch_size,
        "warmup_batches": settings["profile"].warmup_batches,
        "repeats": repeats,
        "optimizer": f"sgd lr {exp.train.lr} momentum {exp.train.momentum} "
        f"weight_decay {exp.train.weight_decay}",
        "ours": ours,
        "reference": references,
        # Against the first reference configuration (num_workers as the official code: 0).
        "speedup": first["speedup_ours_over_this"],
        "speedup_against": f"num_workers_{settings['ref_workers'][0]}",
        "data_path_only": data_path,
    }
