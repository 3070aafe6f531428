"""benchmarks/official_curves.py --report: AULC - random, ours and official, paired by seed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "official_curves.py"
LABELS = [200, 400, 600, 800, 1000, 1200]


@pytest.fixture(scope="module")
def curves():
    spec = importlib.util.spec_from_file_location("official_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flat(level: float) -> list[float]:
    return [level] * len(LABELS)


def _write_runs(tmp_path: Path) -> SimpleNamespace:
    # Flat curves: a curve's AULC is its level, so every expected number is a difference.
    ours = {
        "random": {0: 0.80, 1: 0.70},
        "vaal": {0: 0.81, 1: 0.73},
        "tavaal": {0: 0.78, 1: 0.70},
    }
    rows = [
        {"method": method, "seed": seed, "labels": label, "accuracy": level}
        for method, seeds in ours.items()
        for seed, level in seeds.items()
        for label in LABELS
    ]
    (tmp_path / "results" / "fmnist").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "results" / "fmnist" / "summary.parquet")

    def entry(level: float, complete: bool = True) -> dict:
        return {
            "labels": LABELS,
            "accuracy": _flat(level),
            "train_cpu_seconds": _flat(5.0),
            "query_cpu_seconds": [60.0, 70.0, 80.0, 90.0, 100.0],
            "complete": complete,
        }

    official = {
        "runs": {
            # official VAAL: +0.04 and +0.00 over random; ours +0.01 and +0.03
            "vaal": {"0": entry(0.84), "1": entry(0.70)},
            # seed 1 unfinished: only seed 0 is paired
            "tavaal": {"0": entry(0.79), "1": entry(0.99, complete=False)},
        }
    }
    out = tmp_path / "official.json"
    out.write_text(json.dumps(official))
    return SimpleNamespace(out=out, ours=[tmp_path / "results"])


def _row(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        if line.startswith(f"| {name} |"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row {name!r} in\n{table}")


def test_report_pairs_both_sides_with_our_random_by_seed(curves, tmp_path):
    table = curves.report(_write_runs(tmp_path))
    vaal = _row(table, "VAAL")
    assert vaal[1] == "0,1"
    assert float(vaal[2]) == pytest.approx(0.02)  # ours: mean of +0.01, +0.03
    assert float(vaal[4]) == pytest.approx(0.02)  # official: mean of +0.04, +0.00
    assert float(vaal[6]) == pytest.approx(0.0)  # official - ours: +0.03, -0.03
    # 95% t interval of (+0.03, -0.03): 0 +- 12.706 * 0.0424 / sqrt(2)
    assert vaal[7] == "[-0.381, +0.381]"


def test_report_leaves_out_unfinished_official_seeds(curves, tmp_path):
    table = curves.report(_write_runs(tmp_path))
    tavaal = _row(table, "TA-VAAL")
    assert tavaal[1] == "0"
    assert float(tavaal[2]) == pytest.approx(-0.02)
    assert float(tavaal[4]) == pytest.approx(-0.01)
    assert tavaal[5] == "—"  # one seed: no interval
    assert "- TA-VAAL: 80 (60–100), 10 queries" in table


def test_report_lists_the_stage_means(curves, tmp_path):
    table = curves.report(_write_runs(tmp_path))
    # Random 75.0, VAAL ours 77.0, official 77.0, TA-VAAL ours 74.0, official (seed 0) 79.0
    assert _row(table, "600") == ["600", "75.0", "77.0", "77.0", "74.0", "79.0"]


def test_report_takes_a_seed_missing_in_one_run_from_another(curves, tmp_path):
    args = _write_runs(tmp_path)
    # A second run of our preset: seed 0 again (ignored: the first folder has it) and seed 2.
    rows = [
        {"method": method, "seed": seed, "labels": label, "accuracy": level}
        for method, seed, level in [
            ("random", 0, 0.10),
            ("vaal", 0, 0.10),
            ("random", 2, 0.75),
            ("vaal", 2, 0.74),
        ]
        for label in LABELS
    ]
    second = tmp_path / "second"
    (second / "fmnist").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(second / "fmnist" / "summary.parquet")
    official = json.loads(args.out.read_text())
    entry = dict(official["runs"]["vaal"]["0"], accuracy=_flat(0.77))
    official["runs"]["vaal"]["2"] = entry
    args.out.write_text(json.dumps(official))
    args.ours.append(second)
    vaal = _row(curves.report(args), "VAAL")
    assert vaal[1] == "0,1,2"
    # ours: +0.01, +0.03, -0.01; official: +0.04, +0.00, +0.02
    assert float(vaal[2]) == pytest.approx(0.01)
    assert float(vaal[4]) == pytest.approx(0.02)
