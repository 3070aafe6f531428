"""VAAL / TA-VAAL and VAAL's ablations: the VAE/D training cost of a measured query, per
iteration, and its extrapolation to a 10k-candidate query and to the papers' full schedule."""

from __future__ import annotations

import dataclasses

from tavaal.adversarial import Variant, training_iterations, variant_iterations

from .settings import REFERENCE_CANDIDATES


def adversary_numbers(
    settings, exp, seconds, diagnostics, lines, started, factor, variant: Variant
) -> dict:
    """The VAE/D training cost per loop iteration and its full-schedule extrapolation (a
    frozen-VAE ablation loops over the schedule twice: VAE, then D)."""
    iterations = int(diagnostics["iterations"])
    train_seconds = float(diagnostics["train_seconds"])
    per_iteration = train_seconds / iterations
    other = max(seconds - train_seconds, 0.0)
    labeled_full = round(settings["labeled"] * factor)
    full_cfg = dataclasses.replace(exp.vae, iterations=0)
    # The code's own rule: ceil((|L| + |subset|) * vae.epochs / vae.batch_size).
    full_iterations = variant_iterations(
        variant, training_iterations(full_cfg, labeled_full, REFERENCE_CANDIDATES)
    )
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
