"""The benchmark script runs end to end (--quick) and writes well-formed, finite results."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tavaal.adversarial import variant_iterations
from tavaal.strategies import list_strategies, strategy_class

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
# Methods whose queries train a VAE and/or D: their rows carry the VAE/D numbers.
ADVERSARIAL = {m for m in list_strategies() if strategy_class(m).adversary is not None}


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _non_negative(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "nested" / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_top_level_fields(quick_results):
    results, _ = quick_results
    assert results["device"] == "cpu"
    assert results["quick"] is True
    assert isinstance(results["torch"], str) and results["torch"]
    assert isinstance(results["threads"], int) and results["threads"] >= 1
    assert _positive(results["total_seconds"])
    for key in ("start", "end"):
        load = results["load_average"][key]
        assert len(load) == 3 and all(_non_negative(v) for v in load)
    settings = results["settings"]
    assert settings["profile"] == "quick"
    assert settings["methods"] == list_strategies()
    assert settings["extrapolation"]["factor"] == pytest.approx(10000 / settings["candidates"])


def test_train_section(quick_results):
    results, _ = quick_results
    train = results["train"]
    assert train["model"] == "digits_cnn"
    rows = [train["ours"], *train["reference"].values()]
    assert list(train["reference"]) == ["num_workers_0"]
    for row in rows:
        for key in ("images_per_second", "seconds", "images", "peak_rss_mb"):
            assert _positive(row[key]), (key, row)
        assert _non_negative(row["peak_rss_increase_mb"])
        # Every timed image was counted: images/s x seconds = images (up to rounding).
        assert row["images_per_second"] * row["seconds"] == pytest.approx(row["images"], rel=0.05)
    assert train["ours"]["images"] == train["images"] * train["epochs"]
    for row in rows:
        assert row["repeats"] == train["repeats"] == len(row["images_per_second_runs"])
        assert row["images_per_second"] == max(row["images_per_second_runs"])
    ref = train["reference"]["num_workers_0"]
    assert ref["images"] == train["images"] * train["epochs"]
    assert train["speedup"] == pytest.approx(
        train["ours"]["images_per_second"] / ref["images_per_second"], rel=1e-2
    )


def test_data_path_section(quick_results):
    results, _ = quick_results
    data = results["train"]["data_path_only"]
    assert data["epochs"] >= 1
    rows = [data["ours"], *data["reference"].values()]
    assert list(data["reference"]) == ["num_workers_0"]
    for row in rows:
        for key in ("images", "seconds", "images_per_second", "ms_per_batch"):
            assert _positive(row[key]), (key, row)
    images = results["train"]["images"]
    batch = results["train"]["batch_size"]
    # Ours serves every image each epoch; the reference drops the last partial batch.
    assert data["ours"]["images"] == images * data["epochs"]
    assert (
        data["reference"]["num_workers_0"]["images"] == (images // batch) * batch * data["epochs"]
    )
    assert _positive(data["speedup"])


def test_query_section(quick_results):
    results, _ = quick_results
    query = results["query"]
    settings = results["settings"]
    assert sorted(query) == list_strategies()
    factor = settings["extrapolation"]["factor"]
    for method, row in query.items():
        assert row["candidates"] == settings["candidates"]
        assert row["labeled"] == settings["labeled"]
        assert row["budget"] == settings["budget"]
        assert _positive(row["measured_seconds"]), method
        assert _positive(row["extrapolated_seconds_per_10k"]), method
        # measured_seconds is rounded to 4 decimals: allow that rounding, scaled up.
        assert row["extrapolated_seconds_per_10k"] == pytest.approx(
            row["measured_seconds"] * factor, rel=1e-2, abs=0.5e-4 * factor + 1e-3
        )
        assert _positive(row["peak_rss_mb"]) and _non_negative(row["peak_rss_increase_mb"])
    assert query["random"]["task_models"] == 0
    assert query["random"]["task_model_weights_mb"] == 0
    assert query["vaal"]["task_models"] == 0
    single = query["entropy"]["task_model_weights_mb"]
    assert _positive(single)
    assert query["ensemble_varr"]["task_model_weights_mb"] == pytest.approx(
        settings["ensemble_size"] * single, rel=0.05
    )
    assert query["ensemble_varr"]["task_models"] == settings["ensemble_size"]
    assert query["bald"]["forward_passes_per_candidate"] == settings["mc_samples"]
    assert query["lloss"]["ranker"] and query["tavaal"]["ranker"]
    assert not query["vaal"]["ranker"]


def test_adversarial_numbers(quick_results):
    results, _ = quick_results
    settings = results["settings"]
    vae = settings["vae"]
    factor = settings["extrapolation"]["factor"]
    for method in ADVERSARIAL:
        row = results["query"][method]
        variant = strategy_class(method).adversary
        assert row["vae_iterations"] == variant_iterations(variant, vae["iterations_measured"])
        for key in (
            "vae_train_seconds",
            "vae_seconds_per_iteration",
            "extrapolated_seconds_per_10k_fixed_iterations",
            "extrapolated_seconds_full_schedule",
        ):
            assert _positive(row[key]), (method, key)
        assert _non_negative(row["non_training_seconds"])
        assert row["vae_train_seconds"] <= row["measured_seconds"]
        # TA-VAAL code rule: ceil((|L| + |subset|) * epochs / batch), at the 10k-candidate size.
        labeled_full = round(settings["labeled"] * factor)
        epochs, batch = vae["epochs_full_schedule"], vae["batch_size"]
        expected = variant_iterations(variant, math.ceil((labeled_full + 10000) * epochs / batch))
        assert row["full_schedule_iterations"] == expected
    for method in set(results["query"]) - ADVERSARIAL:
        assert "vae_iterations" not in results["query"][method]


def test_table_on_stdout(quick_results):
    _, stdout = quick_results
    assert "tavaal (on-device)" in stdout
    assert "reference DataLoader workers=0" in stdout
    for method in list_strategies():
        assert f"  {method} " in stdout


def test_decoding_benchmark_times_each_worker_count(tmp_path):
    script = SCRIPT.with_name("decode_throughput.py")
    out = tmp_path / "decode.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--images", "40", "--workers", "1", "2", "--size", "64"]
        + ["--batch", "8", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["workers"] for r in results] == [1, 2]
    for result in results:
        assert (result["images"], result["size"], result["batch"]) == (40, 64, 8)
        assert _positive(result["images_per_second"])
        assert _positive(result["prefetch_images_per_second"])
        assert 20 < result["mean_file_kb"] < 200
    assert "2 worker(s):" in proc.stdout
