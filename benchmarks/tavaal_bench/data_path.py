"""The two training data paths alone, without the model: how long each takes to put a shuffled,
augmented, normalised batch on the device."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from tavaal.config import ExperimentConfig
from tavaal.data import to_tensor_batch
from tavaal.seeding import torch_generator
from tavaal.training import augment_images

from .reference import reference_dataset, reference_loader
from .runtime import sync
from .settings import Profile
from .synthetic import synthetic_dataset

# The data-path-only timing runs whole epochs until at least this many batches are timed.
DATA_PATH_MIN_BATCHES = 16
DATA_PATH_REPEATS = 3


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

    data = reference_dataset(dataset, profile, exp)

    def reference_epoch(workers: int) -> int:
        count = 0
        for inputs, targets in reference_loader(data, range(n), cfg.batch_size, workers, device):
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            count += len(targets)
        return count

    def timed(run_epoch) -> dict:
        run_epoch()  # warm-up epoch, not timed
        sync(device)
        best = math.inf
        for _ in range(DATA_PATH_REPEATS):  # the fastest: least disturbed by other processes
            started = time.perf_counter()
            images = sum(run_epoch() for _ in range(epochs))
            sync(device)
            best = min(best, time.perf_counter() - started)
        return {
            "images": images,
            "seconds": round(best, 4),
            "images_per_second": round(images / best, 1),
            "ms_per_batch": round(1000 * best * cfg.batch_size / images, 3),
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
    threads = torch.get_num_threads()
    result = {
        "epochs": epochs,
        "threads": threads,
        "ours": ours,
        "reference": references,
        "speedup": first["speedup_ours_over_this"],
    }
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
