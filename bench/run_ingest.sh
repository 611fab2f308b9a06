#!/usr/bin/env bash
# The ingestion benchmark (bench/bench_ingest.py; see bench/README.md): a real `cdp serve` on
# SQLite and on PostgreSQL, fed through its HTTP API.
#
#   bash bench/run_ingest.sh [--backend sqlite|postgresql|both] [--quick] [--only stream,csv,identity] [--record]
#
# Uses the project's own environment (.venv at the repository root: the project installed in
# editable mode with the dev extra: httpx2 and psycopg); PostgreSQL needs its server binaries (initdb, pg_ctl)
# for the throwaway cluster started and stopped here. The CSV file and the servers' logs go to
# bench/data/ (git-ignored). Exits 1 when a check fails (the report says which).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VPY="$ROOT/.venv/bin/python"

if [[ ! -x "$VPY" ]]; then
    echo "bench: $VPY not found; create the project's environment first (make test, or: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')" >&2
    exit 1
fi

cd "$ROOT"
export CDP_BENCH_COMMAND="bash bench/run_ingest.sh${*:+ $*}"
exec "$VPY" "$BENCH_DIR/bench_ingest.py" "$@"
