#!/usr/bin/env bash
# CI entry point for the SLURM tests: tests/slurm_cluster.py starts a throwaway one-node cluster
# (installing Debian's slurmctld/slurmd/slurm-client/munge when missing) and
# tests/test_slurm_harness.py runs profiles/slurm on it for real. Needs Debian/Ubuntu and root.
#
#   .ci/slurm-setup.sh                  # no accounting: sacct fails, like many small clusters
#   .ci/slurm-setup.sh --accounting     # also slurmdbd + MariaDB, so sacct works
#   .ci/slurm-setup.sh --accounting -x  # further arguments go to pytest
#
# Run both variants in CI: the shipped profile must work with and without accounting.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--accounting" ]]; then
    export TAVAAL_SLURM_ACCOUNTING=1
    shift
fi
# Fail instead of skipping when this machine cannot run the cluster.
export TAVAAL_REQUIRE_SLURM=1

exec "${PYTHON:-.venv/bin/python}" -m pytest tests/test_slurm_harness.py -ra "$@"
