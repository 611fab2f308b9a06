#!/usr/bin/env bash
# The SQL engine and storage benchmark (bench/bench_sql.py; see bench/README.md):
#
#   bash bench/run_sql.sh [--profiles N] [--runs N] [--loader-profiles K] [--no-memory] [--record]
#
# Uses the project's own environment (.venv at the repository root, the project installed in
# editable mode with the dev extra: psycopg); needs PostgreSQL's server binaries (initdb, pg_ctl) for the
# throwaway cluster it starts and stops. Generated data and the SQLite file go to bench/data/.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VPY="$ROOT/.venv/bin/python"

if [[ ! -x "$VPY" ]]; then
    echo "bench: $VPY not found; create the project's environment first (make test, or: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')" >&2
    exit 1
fi

cd "$ROOT"
export CDP_BENCH_COMMAND="bash bench/run_sql.sh${*:+ $*}"
exec "$VPY" "$BENCH_DIR/bench_sql.py" "$@"
