#!/usr/bin/env bash
# The segments benchmark (bench/bench_segments.py; see bench/README.md):
#
#   bash bench/run_segments.sh [--profiles N] [--segments N] [--record]
#
# Uses the project's own environment (.venv at the repository root) and PostgreSQL's server
# binaries for a throwaway cluster; shares bench/data/ (the generated profiles) with run_sql.sh.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VPY="$ROOT/.venv/bin/python"

if [[ ! -x "$VPY" ]]; then
    echo "bench: $VPY not found; create the project's environment first (make test)" >&2
    exit 1
fi

cd "$ROOT"
export CDP_BENCH_COMMAND="bash bench/run_segments.sh${*:+ $*}"
exec "$VPY" "$BENCH_DIR/bench_segments.py" "$@"
