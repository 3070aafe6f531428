"""The results: JSON file (written atomically) and the table printed on stdout."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tavaal.atomic import atomic_write_text


def _finite(value):
    """JSON-safe: NaN / infinity become null (none is expected; a null shows a problem)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(results: dict, out: Path) -> dict:
    """Write `results` to `out` as JSON (NaN / infinity as null); return what was written."""
    results = _finite(results)
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    return results


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
