#!/usr/bin/env bash
# The SQL engine and storage benchmark (bench/bench_sql.py; see bench/README.md):
#
#   bash bench/run_sql.sh [--profiles N] [--runs N] [--loader-profiles K] [--no-memory] [--record]
#
# Uses the project's own environment (.venv at the repository root, the project installed in
# editable mode with the dev extra: psycopg); needs PostgreSQL's server binaries (initdb, pg_ctl) for the
# throwaway cluster it starts and stops. Generated data and the SQLite file go to bench/data/.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_sql.sh bench_sql.py "$@"
