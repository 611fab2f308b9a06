#!/usr/bin/env bash
# Streaming's per-request floor (bench/bench_ingest_floor.py): 8 clients of single-record POSTs vs
# the same server's trivial authenticated GET, server CPU per request, a bare FastAPI app beside.
#   bash bench/run_ingest_floor.sh [--backend sqlite|postgresql|both] [--requests N] [--rounds R]
# To measure another checkout's code: PYTHONPATH=/path/to/checkout bash bench/run_ingest_floor.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_ingest_floor.sh bench_ingest_floor.py "$@"
