"""Benchmark of tavaal's task-learner training data path and of every query strategy.

    python benchmarks/bench.py [--device auto|cpu|cuda] [--out benchmarks/out/results.json]
                               [--quick] [--candidates N] [--train-images N] [--methods M ...]

Two measurements, on synthetic CIFAR-shaped data (uint8 N x 32 x 32 x 3, 10 classes):

1. Training throughput of ResNet-18 (SGD, batch 128, pad-4 crop + flip), images/s:
   - "ours": the real `tavaal.training.train_task_learner` (whole uint8 train set as one tensor on
     the device, `torch.randperm` batches, `augment_images` + `to_tensor_batch` on the device);
   - "reference": the loop of the official VAAL / TA-VAAL code, a `torch.utils.data.DataLoader`
     over a Dataset returning PIL images through per-sample torchvision transforms.
2. Query seconds of each registered strategy, with a QueryContext built the way
   `tavaal.stage.run_query` builds it, on an untrained ResNet-18 (+ Ranker / ensemble / dropout
   exactly as the method's checkpoint would hold them). VAAL / TA-VAAL train their VAE and
   discriminator for a fixed, small number of iterations; the cost of the papers' full schedule is
   extrapolated from the seconds per iteration.

On CPU the default sizes are scaled down so that a run takes minutes, and per-10k-candidate
numbers are extrapolated (labelled as such in the JSON). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tavaal.adversarial import training_iterations
from tavaal.config import ExperimentConfig
from tavaal.data import DatasetInfo, PreparedDataset, to_tensor_batch
from tavaal.inference import forward_pool
from tavaal.models import build_ranker, build_task_model
from tavaal.pool import candidate_subset, initial_indices
from tavaal.seeding import seed_everything, torch_generator
from tavaal.strategies import QueryContext, get_strategy, list_strategies, strategy_class
from tavaal.training import (
    PLAIN,
    TrainedModels,
    augment_images,
    build_model,
    ensemble_members,
    resolve_device,
    train_task_learner,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "results.json"
# The papers' candidate subset (TA-VAAL §4.2, Learning Loss): 10,000 unlabeled points per query.
REFERENCE_CANDIDATES = 10_000
# train.dropout of the benchmark experiment when it holds MC-dropout methods.
MC_DROPOUT = 0.3
# The data-path-only timing runs whole epochs until at least this many batches are timed.
DATA_PATH_MIN_BATCHES = 16
DATA_PATH_REPEATS = 3
# CIFAR-10 train-split statistics, as the official codes normalise with.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run; command-line flags override single fields."""

    name: str
    dataset: str  # only a label in the config: the data below is synthetic
    model: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_images: int
    train_epochs: int
    batch_size: int
    warmup_batches: int
    candidates: int
    vae_iterations: int
    ref_workers: tuple[int, ...]
    # Interleaved repeats of every training measurement; the fastest run is reported.
    train_repeats: int = 2
    # The papers' VAE / D settings (VAAL supplement, TA-VAAL code): latent 64, 128 base channels,
    # batch 64. The quick profile shrinks them so the test runs in seconds.
    vae_latent: int = 64
    vae_base_channels: int = 128
    vae_batch: int = 64
    vae_disc_hidden: int = 512
    # Test split evaluated (untimed) after training; kept small, it only slows the run down.
    test_images: int = 64
    # torch intra-op threads; None keeps torch's default (one per core).
    threads: int | None = None


PROFILES = {
    # A GPU runs the papers' sizes directly.
    "cuda": Profile(
        name="cuda",
        dataset="cifar10",
        model="resnet18",
        input_shape=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        train_images=2048,
        train_epochs=3,
        batch_size=128,
        warmup_batches=5,
        candidates=REFERENCE_CANDIDATES,
        vae_iterations=50,
        ref_workers=(0, 2),
    ),
    # On a small CPU a ResNet-18 forward pass runs at tens of images/s and one VAE/D iteration
    # of the papers' VAE takes seconds: these sizes keep the whole run at a few minutes.
    "cpu": Profile(
        name="cpu",
        dataset="cifar10",
        model="resnet18",
        input_shape=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        train_images=256,
        train_epochs=1,
        batch_size=128,
        warmup_batches=1,
        candidates=100,
        vae_iterations=3,
        ref_workers=(0, 2),
    ),
    # Tiny sizes and the 8x8 digits CNN: checks that everything runs (tests), not speed.
    "quick": Profile(
        name="quick",
        dataset="digits",
        model="digits_cnn",
        input_shape=(1, 8, 8),
        num_classes=10,
        mean=(0.3,),
        std=(0.4,),
        train_images=64,
        train_epochs=1,
        batch_size=32,
        warmup_batches=1,
        candidates=40,
        vae_iterations=2,
        ref_workers=(0,),
        train_repeats=1,
        vae_latent=8,
        vae_base_channels=8,
        vae_batch=8,
        vae_disc_hidden=32,
        test_images=32,
        # Tiny ops on a busy machine: one thread avoids waiting for a second, preempted one.
        threads=1,
    ),
}


# ----------------------------------------------------------------------------------- utilities


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


_STARTED = time.perf_counter()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not possible.

    Without the reset the peak is a process-lifetime high-water mark, and a measurement that uses
    less memory than an earlier one would show no increase at all.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


def _ru_maxrss_mb(who: int) -> float:
    import resource

    value = resource.getrusage(who).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return value / 1024**2 if sys.platform == "darwin" else value / 1024


class MemoryProbe:
    """Peak memory of the code run inside `with MemoryProbe(device) as probe:`.

    CPU: resident set size (RSS) of this process, peak and increase over the RSS at entry
    (memory that an earlier measurement freed back to the allocator but the process kept is
    reused without showing as an increase). CUDA: torch.cuda.max_memory_allocated as well.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: dict[str, float | str] = {}

    def __enter__(self) -> MemoryProbe:
        gc.collect()
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.gpu_before = torch.cuda.memory_allocated(self.device)
        self.hwm = _reset_peak_rss()
        current = _proc_status_kb("VmRSS")
        self.rss_before = current / 1024 if current is not None else None
        self.ru_before = _ru_maxrss_mb(_resource_self())
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            return
        _sync(self.device)
        if self.hwm:
            peak = _proc_status_kb("VmHWM") / 1024
            increase = peak - self.rss_before
            how = "VmHWM after resetting it through /proc/self/clear_refs"
        else:
            peak = _ru_maxrss_mb(_resource_self())
            increase = peak - self.ru_before
            how = "getrusage ru_maxrss (process-lifetime peak; the increase may read 0)"
        self.result = {
            "peak_rss_mb": round(peak, 1),
            "peak_rss_increase_mb": round(max(increase, 0.0), 1),
            "rss_measured_by": how,
        }
        if self.device.type == "cuda":
            peak_gpu = torch.cuda.max_memory_allocated(self.device)
            self.result["peak_gpu_mb"] = round(peak_gpu / 1024**2, 1)
            self.result["peak_gpu_increase_mb"] = round(
                max(peak_gpu - self.gpu_before, 0) / 1024**2, 1
            )


def _release_freed_memory() -> None:
    """Hand memory that freed tensors left in glibc's heap back to the OS (glibc only), so the
    RSS at the start of a measurement does not include an earlier measurement's leftovers."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _resource_self() -> int:
    import resource

    return resource.RUSAGE_SELF


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------------- data and config


def synthetic_dataset(
    profile: Profile, n_train: int, n_test: int, seed: int, role: str
) -> PreparedDataset:
    """An in-memory PreparedDataset of uniform-noise uint8 images with random labels."""
    rng = np.random.default_rng([seed, sum(role.encode())])
    c, h, w = profile.input_shape
    info = DatasetInfo(
        name=f"synthetic-{profile.dataset}",
        kind="image",
        num_classes=profile.num_classes,
        classes=tuple(str(k) for k in range(profile.num_classes)),
        input_shape=profile.input_shape,
        mean=profile.mean,
        std=profile.std,
        n_train=n_train,
        n_test=n_test,
    )
    return PreparedDataset(
        info=info,
        x_train=rng.integers(0, 256, (n_train, h, w, c), dtype=np.uint8),
        y_train=rng.integers(0, profile.num_classes, n_train).astype(np.int64),
        x_test=rng.integers(0, 256, (n_test, h, w, c), dtype=np.uint8),
        y_test=rng.integers(0, profile.num_classes, n_test).astype(np.int64),
    )


def experiment(settings: dict, methods: list[str]) -> ExperimentConfig:
    """The benchmark's experiment, built and validated like a workflow config entry."""
    profile: Profile = settings["profile"]
    data = {
        "dataset": profile.dataset,
        "model": profile.model,
        "methods": methods,
        "seeds": [settings["seed"]],
        "initial_size": settings["labeled"],
        "budget": settings["budget"],
        "subset_size": settings["candidates"],
        "stages": 2,
        "train": {
            "epochs": settings["train_epochs"],
            "batch_size": profile.batch_size,
            # MC-dropout methods sample the head's dropout (it applies to every method alike).
            "dropout": MC_DROPOUT
            if any(strategy_class(m).needs_dropout for m in methods)
            else 0.0,
        },
        "vae": {
            "latent_dim": profile.vae_latent,
            "base_channels": profile.vae_base_channels,
            "batch_size": profile.vae_batch,
            "disc_hidden": profile.vae_disc_hidden,
            "iterations": settings["vae_iterations"],
        },
    }
    return ExperimentConfig.from_dict("benchmark", data)


# ------------------------------------------------------------------------------------ training


def bench_train_ours(
    settings: dict, exp: ExperimentConfig, device: torch.device, warm_up: bool = True
) -> dict:
    """Throughput of the real train_task_learner (the plain recipe: one model, no ranker)."""
    profile: Profile = settings["profile"]
    n = settings["train_images"]
    dataset = synthetic_dataset(profile, n, profile.test_images, settings["seed"], "train")
    indices = np.arange(n, dtype=np.int64)
    labels = np.asarray(dataset.y_train, dtype=np.int64)
    quiet = _quiet_log(settings)

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
        "load1_after": _load1(),
    }


class PILImageDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: uint8 array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        image = self.images[index]
        # Single-channel images become mode "L", as torchvision's MNIST does.
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        return self.transform(pil), int(self.labels[index])


def reference_transform(profile: Profile, exp: ExperimentConfig):
    import torchvision.transforms as T

    _, h, _ = profile.input_shape
    # The official TA-VAAL CIFAR train transform (VAAL's code: ToTensor + Normalize only).
    return T.Compose(
        [
            T.RandomCrop(h, padding=exp.train.crop_padding),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(profile.mean, profile.std),
        ]
    )


def reference_loader(data, indices, batch_size: int, workers: int, device: torch.device):
    """As both official codes: SubsetRandomSampler over the labeled indices, drop_last, and
    (TA-VAAL) pin_memory; num_workers is not set there, i.e. 0."""
    return torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        sampler=torch.utils.data.SubsetRandomSampler(list(indices)),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )


def bench_train_reference(
    settings: dict, exp: ExperimentConfig, device: torch.device, workers: int, warm_up: bool = True
) -> dict:
    """The official codes' loop: DataLoader + SubsetRandomSampler + per-sample PIL transforms."""
    profile: Profile = settings["profile"]
    n = settings["train_images"]
    dataset = synthetic_dataset(profile, n, profile.test_images, settings["seed"], "train")
    data = PILImageDataset(
        np.asarray(dataset.x_train), np.asarray(dataset.y_train), reference_transform(profile, exp)
    )
    cfg = exp.train

    def loader(indices) -> torch.utils.data.DataLoader:
        return reference_loader(data, indices, cfg.batch_size, workers, device)

    def fresh_model():
        model = build_task_model(exp.model, profile.input_shape, profile.num_classes).to(device)
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
        _sync(device)

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
        _sync(device)
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
        "load1_after": _load1(),
    }
    if workers > 0:
        # Worker processes are not in this process's RSS; this is the largest one's lifetime peak.
        import resource

        result["worker_peak_rss_mb"] = round(_ru_maxrss_mb(resource.RUSAGE_CHILDREN), 1)
    return result


def bench_data_path(settings: dict, exp: ExperimentConfig, device: torch.device) -> dict:
    """The data paths alone, without the model: shuffled, augmented, normalised batches on the
    device. On a CPU the network's compute hides the difference between the two paths in the
    end-to-end numbers; this is the part of the step they differ in."""
    profile: Profile = settings["profile"]
    n = settings["train_images"]
    cfg = exp.train
    dataset = synthetic_dataset(profile, n, profile.test_images, settings["seed"], "train")
    info = dataset.info
    epochs = max(1, math.ceil(DATA_PATH_MIN_BATCHES / max(1, n // cfg.batch_size)))

    # Ours: the per-batch steps of train_task_learner's loop, with the library's functions.
    x_all = torch.from_numpy(np.asarray(dataset.x_train)).to(device)
    y_all = torch.from_numpy(np.asarray(dataset.y_train)).to(device)
    generator = torch_generator(settings["seed"], 0, "bench/data_path", device)

    def ours_epoch() -> int:
        count = 0
        order = torch.randperm(n, generator=generator, device=device)
        for batch_index in torch.split(order, cfg.batch_size):
            raw = augment_images(x_all[batch_index], generator, cfg.crop_padding, cfg.hflip)
            batch = to_tensor_batch(raw, info), y_all[batch_index]
            count += len(batch[1])
        return count

    data = PILImageDataset(
        np.asarray(dataset.x_train), np.asarray(dataset.y_train), reference_transform(profile, exp)
    )

    def reference_epoch(workers: int) -> int:
        count = 0
        for inputs, targets in reference_loader(data, range(n), cfg.batch_size, workers, device):
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            count += len(targets)
        return count

    def timed(run_epoch) -> dict:
        run_epoch()  # warm-up epoch, not timed
        _sync(device)
        best = math.inf
        for _ in range(DATA_PATH_REPEATS):  # the fastest: least disturbed by other processes
            started = time.perf_counter()
            images = sum(run_epoch() for _ in range(epochs))
            _sync(device)
            best = min(best, time.perf_counter() - started)
        seconds = best
        return {
            "images": images,
            "seconds": round(seconds, 4),
            "images_per_second": round(images / seconds, 1),
            "ms_per_batch": round(1000 * seconds * cfg.batch_size / images, 3),
        }

    ours = timed(ours_epoch)
    references = {}
    for workers in settings["ref_workers"]:
        ref = timed(lambda w=workers: reference_epoch(w))
        ref["speedup_ours_over_this"] = round(
            ours["images_per_second"] / ref["images_per_second"], 3
        )
        references[f"num_workers_{workers}"] = ref
    first = references[f"num_workers_{settings['ref_workers'][0]}"]
    result = {
        "epochs": epochs,
        "threads": torch.get_num_threads(),
        "ours": ours,
        "reference": references,
        "speedup": first["speedup_ours_over_this"],
    }
    threads = torch.get_num_threads()
    if device.type == "cpu" and threads > 1:
        # Ours is a dozen whole-batch torch ops, each split over the threads; on a busy machine
        # every op waits for a descheduled thread. The reference's per-sample ops are below
        # torch's parallel grain and run on one thread. Timing both on one thread shows it.
        torch.set_num_threads(1)
        try:
            single_ours = timed(ours_epoch)
            single_ref = timed(lambda: reference_epoch(0))
        finally:
            torch.set_num_threads(threads)
        single_ref["speedup_ours_over_this"] = round(
            single_ours["images_per_second"] / single_ref["images_per_second"], 3
        )
        result["one_thread"] = {"ours": single_ours, "reference": {"num_workers_0": single_ref}}
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
        _log(
            f"train {repeat + 1}/{repeats}: ours, {settings['train_images']} images x "
            f"{exp.train.epochs} epochs"
        )
        runs["ours"].append(bench_train_ours(settings, exp, device, warm_up=first_round))
        _log(
            f"train {repeat + 1}/{repeats}: ours {runs['ours'][-1]['images_per_second']:.1f} img/s"
        )
        for workers, key in zip(settings["ref_workers"], keys, strict=True):
            ref = bench_train_reference(settings, exp, device, workers, warm_up=first_round)
            runs[key].append(ref)
            _log(
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
    _log("train: data paths alone (no model)")
    data_path = bench_data_path(settings, exp, device)
    _log(f"train: data paths alone, speed-up {data_path['speedup']:.1f}x")
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


# --------------------------------------------------------------------------------------- query


def untrained_models(exp: ExperimentConfig, method: str, info: DatasetInfo, device):
    """What load_task_models returns for `method`, with freshly initialised weights: the
    method's dropout, ensemble size and Ranker, in eval mode."""
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

    def log(line: str) -> None:
        lines.append((time.perf_counter(), line))
        if verbose:
            _log(f"  {line}")

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
        log=log,
        resume_path=workdir / f"{method}-query{stage}.resume",
        checkpoint_every=exp.vae.checkpoint_every,
    )
    with MemoryProbe(device) as probe:
        started = time.perf_counter()
        result = strategy.query(ctx)
        _sync(device)
        seconds = time.perf_counter() - started
    if len(result.chosen) != exp.budget:
        raise RuntimeError(f"{method} chose {len(result.chosen)} samples, budget {exp.budget}")

    factor = REFERENCE_CANDIDATES / settings["candidates"]
    strategy_cls = strategy_class(method)
    out = {
        "candidates": len(ctx.candidates),
        "labeled": len(ctx.labeled),
        "budget": exp.budget,
        "task_models": len(trained.models) if trained else 0,
        "ranker": bool(trained and trained.ranker is not None),
        "forward_passes_per_candidate": _passes(exp, strategy_cls, trained),
        # Built before the measurement: in peak_rss_mb / peak_gpu_mb, not in the increases.
        "task_model_weights_mb": round(_weights_mb(trained), 1),
        "measured_seconds": round(seconds, 4),
        "extrapolated_seconds_per_10k": round(seconds * factor, 3),
        **probe.result,
        "load1_after": _load1(),
    }
    diagnostics = result.diagnostics
    if "train_seconds" in diagnostics and "iterations" in diagnostics:
        out.update(_adversary_numbers(settings, exp, seconds, diagnostics, lines, started, factor))
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


def _adversary_numbers(settings, exp, seconds, diagnostics, lines, started, factor) -> dict:
    """VAAL / TA-VAAL: the VAE/D training cost per iteration and its full-schedule extrapolation."""
    iterations = int(diagnostics["iterations"])
    train_seconds = float(diagnostics["train_seconds"])
    per_iteration = train_seconds / iterations
    other = max(seconds - train_seconds, 0.0)
    labeled_full = round(settings["labeled"] * factor)
    full_cfg = dataclasses.replace(exp.vae, iterations=0)
    # The code's own rule: ceil((|L| + |subset|) * vae.epochs / vae.batch_size).
    full_iterations = training_iterations(full_cfg, labeled_full, REFERENCE_CANDIDATES)
    numbers = {
        "vae_iterations": iterations,
        "vae_train_seconds": round(train_seconds, 4),
        "vae_seconds_per_iteration": round(per_iteration, 5),
        # Everything but the VAE/D training: Ranker pass (TA-VAAL), loading the inputs, scoring
        # candidates and labeled points with the VAE and D, building the score table.
        "non_training_seconds": round(other, 4),
        "extrapolated_seconds_per_10k_fixed_iterations": round(train_seconds + other * factor, 3),
        "full_schedule_labeled": labeled_full,
        "full_schedule_candidates": REFERENCE_CANDIDATES,
        "full_schedule_epochs": exp.vae.epochs,
        "full_schedule_iterations": full_iterations,
        "extrapolated_seconds_full_schedule": round(
            per_iteration * full_iterations + other * factor, 1
        ),
    }
    # Split of the non-training time at the strategy's "training ... iterations" log line, which
    # comes after the Ranker pass and input loading and right before the training loop.
    announce = [t for t, line in lines if "iterations" in line and "training" in line]
    if announce:
        prep = announce[0] - started
        numbers["prep_seconds"] = round(prep, 4)
        numbers["scoring_seconds"] = round(max(seconds - prep - train_seconds, 0.0), 4)
    return numbers


def warm_up_inference(settings: dict, exp: ExperimentConfig, problem: dict, device) -> None:
    """One untimed batch through a task model, so kernel setup is not billed to the first method."""
    dataset = problem["dataset"]
    model = build_task_model(exp.model, dataset.info.input_shape, dataset.info.num_classes)
    batch = problem["candidates"][: exp.query.inference_batch_size]
    forward_pool(
        model.to(device),
        dataset.x_train,
        batch,
        dataset.info,
        device,
        exp.query.inference_batch_size,
    )
    _sync(device)


def bench_query(settings: dict, device: torch.device) -> dict:
    methods = settings["methods"]
    exp = experiment(settings, methods)
    problem = query_problem(settings, exp)
    warm_up_inference(settings, exp, problem, device)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tavaal-bench-") as tmp:
        for method in methods:
            _log(f"query: {method}")
            results[method] = bench_query_method(settings, exp, problem, method, device, Path(tmp))
            extra = ""
            if "vae_seconds_per_iteration" in results[method]:
                extra = f" ({results[method]['vae_seconds_per_iteration']:.2f} s/VAE iteration)"
            _log(f"query: {method} {results[method]['measured_seconds']:.2f} s{extra}")
    return results


# ---------------------------------------------------------------------------------------- main


def _quiet_log(settings: dict):
    if settings["verbose"]:
        return lambda line: _log(f"  {line}")
    return lambda line: None


def resolve_settings(args: argparse.Namespace, device: torch.device) -> dict:
    profile = PROFILES["quick" if args.quick else ("cuda" if device.type == "cuda" else "cpu")]
    candidates = args.candidates or profile.candidates
    # The papers' first query: |L| = 1,000 labeled, 10,000 candidates, budget 1,000. Scaling
    # all three together keeps every forward-pass cost proportional to the candidates.
    labeled = args.labeled or max(1, candidates // 10)
    budget = args.budget or max(1, candidates // 10)
    methods = args.methods or list_strategies()
    return {
        "profile": profile,
        "seed": args.seed,
        "train_images": args.train_images or profile.train_images,
        "train_epochs": args.train_epochs or profile.train_epochs,
        "repeats": args.repeats or profile.train_repeats,
        "candidates": candidates,
        "labeled": labeled,
        "budget": budget,
        "vae_iterations": args.vae_iterations or profile.vae_iterations,
        "ref_workers": tuple(args.ref_workers if args.ref_workers else profile.ref_workers),
        "methods": methods,
        "verbose": args.verbose,
        "run_train": not args.no_train,
        "run_query": not args.no_query,
    }


def settings_json(settings: dict, exp: ExperimentConfig) -> dict:
    profile: Profile = settings["profile"]
    factor = REFERENCE_CANDIDATES / settings["candidates"]
    return {
        "profile": profile.name,
        "model": profile.model,
        "input_shape": list(profile.input_shape),
        "num_classes": profile.num_classes,
        "seed": settings["seed"],
        "train_images": settings["train_images"],
        "train_epochs": settings["train_epochs"],
        "train_repeats": settings["repeats"],
        "batch_size": profile.batch_size,
        "warmup_batches": profile.warmup_batches,
        "ref_workers": list(settings["ref_workers"]),
        "candidates": settings["candidates"],
        "labeled": settings["labeled"],
        "budget": settings["budget"],
        "methods": settings["methods"],
        "inference_batch_size": exp.query.inference_batch_size,
        "mc_samples": exp.query.mc_samples,
        "mc_dropout": exp.train.dropout,
        "ensemble_size": exp.query.ensemble_size,
        "vae": {
            "latent_dim": exp.vae.latent_dim,
            "base_channels": exp.vae.base_channels,
            "batch_size": exp.vae.batch_size,
            "disc_hidden": exp.vae.disc_hidden,
            "disc_depth": exp.vae.disc_depth,
            "vae_steps": exp.vae.vae_steps,
            "disc_steps": exp.vae.disc_steps,
            "iterations_measured": exp.vae.iterations,
            "epochs_full_schedule": exp.vae.epochs,
            "train_on": exp.vae.train_on,
        },
        "extrapolation": {
            "factor": round(factor, 6),
            "measured": "measured_seconds: wall time of strategy.query(ctx) on `candidates` "
            "candidates, `labeled` labeled points, `budget` picks (model building excluded)",
            "per_10k": "extrapolated_seconds_per_10k = measured_seconds * 10000 / candidates; "
            "labeled and budget are scaled with the candidates (default candidates / 10, the "
            "papers' 1,000 labeled : 10,000 candidates), so every forward-pass cost scales "
            "linearly. Not measured: it ignores fixed per-query overheads (overestimate) and "
            "coreset's k-center greedy, O(budget * (labeled + candidates)) (underestimate)",
            "vae_fixed_iterations": "extrapolated_seconds_per_10k_fixed_iterations = "
            "vae_train_seconds + non_training_seconds * 10000 / candidates",
            "vae_full_schedule": "full_schedule_iterations = ceil((|L| + |subset|) * vae.epochs "
            "/ vae.batch_size) (TA-VAAL code rule, tavaal.adversarial.training_iterations) with "
            "|L| = labeled * 10000 / candidates, |subset| = 10000; "
            "extrapolated_seconds_full_schedule = vae_seconds_per_iteration * "
            "full_schedule_iterations + non_training_seconds * 10000 / candidates",
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark tavaal's training data path and query strategies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and the 8x8 digits CNN (a smoke test)"
    )
    parser.add_argument(
        "--candidates", type=int, help="candidates per query (default: 10000 cuda, 200 cpu)"
    )
    parser.add_argument("--labeled", type=int, help="labeled set (default: candidates / 10)")
    parser.add_argument("--budget", type=int, help="picks per query (default: candidates / 10)")
    parser.add_argument(
        "--train-images", type=int, help="training images (default: 2048 cuda, 256 cpu)"
    )
    parser.add_argument(
        "--train-epochs", type=int, help="timed training epochs (default: 3 cuda, 1 cpu)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="interleaved repeats of each training measurement, best reported (default: 2; "
        "--quick: 1)",
    )
    parser.add_argument(
        "--vae-iterations", type=int, help="VAE/D iterations measured (default: 50 cuda, 3 cpu)"
    )
    parser.add_argument(
        "--ref-workers",
        type=int,
        nargs="+",
        help="DataLoader num_workers of the reference loop, one run each (default: 0 2; "
        "the official codes use 0)",
    )
    parser.add_argument("--methods", nargs="+", help="query methods (default: all registered)")
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's; --quick: 1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-train", action="store_true", help="skip the training benchmark")
    parser.add_argument("--no-query", action="store_true", help="skip the query benchmark")
    parser.add_argument("--verbose", action="store_true", help="show the library's log lines")
    args = parser.parse_args(argv)
    for key in (
        "candidates",
        "labeled",
        "budget",
        "train_images",
        "train_epochs",
        "vae_iterations",
        "threads",
        "repeats",
    ):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.ref_workers and min(args.ref_workers) < 0:
        parser.error("--ref-workers must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def _finite(value):
    """JSON-safe: NaN / infinity become null (none is expected; a null shows a problem)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(results: dict) -> str:
    lines = [
        f"device {results['device']} ({results['device_name']}), torch {results['torch']}, "
        f"{results['threads']} threads, load average "
        + " / ".join(f"{v:.2f}" for v in results["load_average"]["start"])
        + " (start) "
        + " / ".join(f"{v:.2f}" for v in results["load_average"]["end"])
        + " (end)",
    ]
    train = results.get("train")
    if train:
        mem = "peak GPU MB" if "peak_gpu_mb" in train["ours"] else "RSS +MB"
        lines += [
            "",
            f"Training {train['model']}: {train['images']} images x {train['epochs']} epochs, "
            f"batch {train['batch_size']}, crop + flip; best of {train['repeats']} interleaved "
            "runs",
            f"  {'data path':<34}{'img/s':>9}{'seconds':>10}{mem:>13}",
        ]
        rows = [("tavaal (on-device)", train["ours"])]
        rows += [
            (f"reference DataLoader workers={r['num_workers']}", r)
            for r in train["reference"].values()
        ]
        for label, row in rows:
            memory = row.get("peak_gpu_mb", row["peak_rss_increase_mb"])
            lines.append(
                f"  {label:<34}{row['images_per_second']:>9.1f}{row['seconds']:>10.2f}"
                f"{memory:>13.1f}"
            )
        for key, ref in train["reference"].items():
            lines.append(f"  speed-up ours / reference {key}: {ref['speedup_ours_over_this']:.2f}x")
        data = train["data_path_only"]
        lines.append(
            f"  data path alone (batches ready on the device, no model), {data['epochs']} epochs:"
        )
        rows = [(f"tavaal (on-device), {data['threads']} threads", data["ours"])]
        rows += [(f"reference {key}", ref) for key, ref in data["reference"].items()]
        if "one_thread" in data:
            one = data["one_thread"]
            rows.append(("tavaal (on-device), 1 thread", one["ours"]))
            rows += [(f"reference {key}, 1 thread", ref) for key, ref in one["reference"].items()]
        for label, row in rows:
            speedup = row.get("speedup_ours_over_this")
            lines.append(
                f"    {label:<38}{row['images_per_second']:>9.0f} img/s"
                f"{row['ms_per_batch']:>9.2f} ms/batch"
                + (f"   ours is {speedup:.2f}x" if speedup is not None else "")
            )
    query = results.get("query")
    if query:
        s = results["settings"]
        lines += [
            "",
            f"Query: {s['candidates']} candidates, {s['labeled']} labeled, budget {s['budget']} "
            f"(measured); per-10k = measured x {s['extrapolation']['factor']:g} (extrapolated)",
            f"  {'method':<14}{'measured s':>11}{'per-10k s':>12}{'peak +MB':>10}  VAE/D",
        ]
        for method, row in query.items():
            memory = row.get("peak_gpu_increase_mb", row["peak_rss_increase_mb"])
            note = ""
            if "vae_seconds_per_iteration" in row:
                hours = row["extrapolated_seconds_full_schedule"] / 3600
                note = (
                    f"{row['vae_iterations']} it x {row['vae_seconds_per_iteration']:.3f} s; "
                    f"per-10k at these iterations "
                    f"{row['extrapolated_seconds_per_10k_fixed_iterations']:.1f} s; full schedule "
                    f"{row['full_schedule_iterations']} it ~ {hours:.2f} h (extrapolated)"
                )
            lines.append(
                f"  {method:<14}{row['measured_seconds']:>11.3f}"
                f"{row['extrapolated_seconds_per_10k']:>12.1f}{memory:>10.1f}  {note}"
            )
    lines.append(f"\ntotal {results['total_seconds']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    settings = resolve_settings(args, device)
    threads = args.threads or settings["profile"].threads
    if threads:
        torch.set_num_threads(threads)
    exp = experiment(settings, settings["methods"])  # validates methods and sizes early
    load_start = [round(v, 2) for v in os.getloadavg()]
    started = time.perf_counter()
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    )
    results: dict = {
        "device": device.type,
        "device_name": device_name or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "quick": bool(args.quick),
        "settings": settings_json(settings, exp),
    }
    try:
        import torchvision

        results["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    _log(
        f"benchmark on {device} ({results['threads']} threads), profile "
        f"{settings['profile'].name}, load average {load_start}"
    )
    if settings["run_train"]:
        results["train"] = bench_train(settings, device)
    if settings["run_query"]:
        results["query"] = bench_query(settings, device)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["load_average"] = {
        "start": load_start,
        "end": [round(v, 2) for v in os.getloadavg()],
    }
    results = _finite(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(format_table(results))
    print(f"results written to {out}")
    return results


if __name__ == "__main__":
    main()
