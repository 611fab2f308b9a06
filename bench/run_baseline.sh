#!/usr/bin/env bash
# Ingestion against bare baselines (bench/bench_baseline.py; see bench/README.md):
#   bash bench/run_baseline.sh [--backend sqlite|postgresql|both] [--csv-rows N] [--requests N] [--only stream,csv] [--record]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VPY="$ROOT/.venv/bin/python"

if [[ ! -x "$VPY" ]]; then
    echo "bench: $VPY not found; create the project's environment first (make test, or: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')" >&2
    exit 1
fi

cd "$ROOT"
export CDP_BENCH_COMMAND="bash bench/run_baseline.sh${*:+ $*}"
exec "$VPY" "$BENCH_DIR/bench_baseline.py" "$@"
