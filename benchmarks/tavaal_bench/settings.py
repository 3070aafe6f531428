"""Sizes of a run (profiles), the settings resolved from them and the command line, the
benchmark's experiment config, and the "settings" section of the JSON results."""

from __future__ import annotations

import argparse
import dataclasses

import torch

from tavaal.config import ExperimentConfig
from tavaal.strategies import list_strategies, strategy_class

# The papers' candidate subset (TA-VAAL §4.2, Learning Loss): 10,000 unlabeled points per query.
REFERENCE_CANDIDATES = 10_000
# train.dropout of the benchmark experiment when it holds MC-dropout methods.
MC_DROPOUT = 0.3
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
            "dropout": MC_DROPOUT if any(strategy_class(m).needs_dropout for m in methods) else 0.0,
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
