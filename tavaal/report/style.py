"""How methods are named, coloured and ordered in every table and figure."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import matplotlib
import pandas as pd

# Display order and names of the methods (papers' spelling).
METHOD_LABELS = {
    "random": "Random",
    "entropy": "Entropy",
    "margin": "Margin",
    "least_confidence": "Least confidence",
    "bald": "BALD",
    "var_ratio": "Var. ratio (MC-dropout)",
    "ensemble_varr": "Ensemble w. VarR",
    "coreset": "Core-set",
    "badge": "BADGE",
    "typiclust": "TypiClust",
    "probcover": "ProbCover",
    "lloss": "Learning loss",
    "lloss_v2": "Learning loss v2",
    "vaal": "VAAL",
    "vaal_no_vae": "VAAL w/o VAE (D on pixels)",
    "vaal_frozen_vae": "VAAL, frozen VAE + D",
    "vae_wasserstein": "VAE + 2-Wasserstein",
    "vaal_lloss": "VAAL + learning loss",
    "tavaal": "TA-VAAL",
}


def method_order(methods: Iterable[str]) -> list[str]:
    """Methods in the papers' order (baselines first, TA-VAAL last), unknown names at the end."""
    known = list(METHOD_LABELS)
    methods = list(dict.fromkeys(methods))
    return sorted(methods, key=lambda m: (known.index(m) if m in known else len(known), m))


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


# Baselines newer than the papers (issue 26): their colours come after the papers' methods', so
# that those keep the colours earlier figures gave them.
NEWER_BASELINES = ("margin", "least_confidence", "badge", "typiclust", "probcover")


def method_color(method: str):
    """One fixed colour per method, the same in every figure of every experiment; the known
    methods (more than ten) each get their own: tab10, then Dark2's darker shades, then Set1's
    (the papers' methods first, the newer baselines after them)."""
    known = [m for m in METHOD_LABELS if m not in NEWER_BASELINES] + list(NEWER_BASELINES)
    palette = [
        *matplotlib.colormaps["tab10"].colors,
        *matplotlib.colormaps["Dark2"].colors,
        *matplotlib.colormaps["Set1"].colors,
    ]
    # crc32, not hash(): str hashes differ between processes, and every figure is its own job.
    position = known.index(method) if method in known else len(known) + zlib.crc32(method.encode())
    return palette[position % len(palette)]


def in_method_order(frame: pd.DataFrame, first: str | None = None) -> pd.DataFrame:
    """Rows sorted by `first` (if given), then method in the papers' order, seed and stage."""
    if frame.empty or "method" not in frame:
        return frame.reset_index(drop=True)
    rank = {m: i for i, m in enumerate(method_order(frame["method"]))}
    keys = ([first] if first else []) + ["_rank"] + [c for c in ("seed", "stage") if c in frame]
    frame = frame.assign(_rank=frame["method"].map(rank)).sort_values(keys, kind="stable")
    return frame.drop(columns="_rank").reset_index(drop=True)
