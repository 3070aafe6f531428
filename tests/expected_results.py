"""Committed fingerprints of index files: any change of results is a visible, deliberate commit.

The fingerprint of an index file is a SHA-256 over its columns' values and its metadata, not
over its bytes: the parquet writer's version, which pyarrow (not pinned) puts into every file,
changes the bytes but not the results. Left out of the metadata: `tavaal_version`, and the
measured seconds of a scores file (`query_seconds`, the diagnostics' `*_seconds`), which are
timings, not results. The labeled files are byte-identical run to run in one environment
(tests/test_cli.py, tests/test_workflow.py).

Fingerprints are kept per CPU-kernel level (`tavaal.cpu_kernels`): `NAME.x86-64-avx2.json` for
x86-64 CPUs with AVX2 and FMA, `NAME.x86-64-baseline.json` for the others; the pinned kernels give
the same bits on every CPU of a level. To accept new results on purpose (after a change that
alters them), regenerate both sets (any AVX2 machine can make the baseline one):

    export TAVAAL_UPDATE_EXPECTED=1
    python -m pytest -q tests -k expected_results
    TAVAAL_CPU_KERNELS=baseline python -m pytest -q tests -k expected_results

and commit them with the change, saying why results moved. A machine whose kernels are not
pinned (not x86-64, or TAVAAL_CPU_KERNELS=native) has no fingerprints: the tests say so and skip.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import tavaal
from tavaal.cpu_kernels import KERNELS_ENV, NATIVE

EXPECTED = Path(__file__).resolve().parent / "expected"
PINNED_PAIR = Path(__file__).resolve().parent.parent / ".ci" / "torch-pinned.txt"
UPDATE_ENV = "TAVAAL_UPDATE_EXPECTED"


def content_hash(path: Path) -> str:
    table = pq.read_table(path)
    digest = hashlib.sha256()
    metadata = {
        k.decode(): v.decode()
        for k, v in (table.schema.metadata or {}).items()
        if not k.startswith(b"pandas") and k not in (b"tavaal_version", b"query_seconds")
    }
    if "diagnostics" in metadata:
        diagnostics = json.loads(metadata["diagnostics"])
        metadata["diagnostics"] = {
            k: v for k, v in diagnostics.items() if not k.endswith("seconds")
        }
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    for name in table.column_names:
        digest.update(name.encode())
        column = table.column(name).combine_chunks()
        for buffer in column.buffers():
            if buffer is not None:
                digest.update(buffer.to_pybytes())
    return digest.hexdigest()


def pinned_torch() -> str:
    """The torch release of the exact pair the fingerprints are made with."""
    for line in PINNED_PAIR.read_text().splitlines():
        if line.startswith("torch=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{PINNED_PAIR} names no torch release")


def check_against_expected(name: str, root: Path, files: list[Path]) -> None:
    """Compare the files' fingerprints (keys: paths relative to `root`) with tests/expected/
    `name`.json, or rewrite that file when TAVAAL_UPDATE_EXPECTED=1."""
    pinned = pinned_torch()
    if torch.__version__.split("+")[0] != pinned:
        pytest.skip(
            f"fingerprints are made with torch {pinned} (.ci/torch-pinned.txt); this is torch "
            f"{torch.__version__}, whose kernels may round differently"
        )
    if tavaal.CPU_KERNELS == NATIVE:
        pytest.skip(
            f"CPU kernels not pinned ({KERNELS_ENV}=native or not an x86-64 CPU): fingerprints "
            "exist per pinned level only (tests/expected_results.py)"
        )
    found = {str(path.relative_to(root)): content_hash(path) for path in sorted(files)}
    expected_path = EXPECTED / f"{name}.{tavaal.CPU_KERNELS}.json"
    if os.environ.get(UPDATE_ENV) == "1":
        EXPECTED.mkdir(exist_ok=True)
        expected_path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        return
    expected = json.loads(expected_path.read_text())
    changed = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    assert found.keys() == expected.keys(), (
        f"files differ from {expected_path.name}: missing {sorted(expected.keys() - found)}, "
        f"new {sorted(found.keys() - expected)}"
    )
    assert not changed, (
        f"results changed for {len(changed)} of {len(found)} index files (e.g. {changed[0]}) "
        f"at CPU-kernel level {tavaal.CPU_KERNELS}; "
        f"if on purpose, regenerate with {UPDATE_ENV}=1 (see tests/expected_results.py)"
    )
