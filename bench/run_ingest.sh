#!/usr/bin/env bash
# The ingestion benchmark (bench/bench_ingest.py; see bench/README.md): a real `cdp serve` on
# SQLite and on PostgreSQL, fed through its HTTP API.
#
#   bash bench/run_ingest.sh [--backend sqlite|postgresql|both] [--quick] [--only stream,csv,identity] [--record]
#                            [--stream-records N,M] [--csv-rows N] [--csv-pad-bytes N] [--people N]
#
# Uses the project's own environment (.venv at the repository root: the project installed in
# editable mode with the dev extra: httpx2 and psycopg); PostgreSQL needs its server binaries (initdb, pg_ctl)
# for the throwaway cluster started and stopped here. The CSV file and the servers' logs go to
# bench/data/ (git-ignored). Exits 1 when a check fails (the report says which).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_ingest.sh bench_ingest.py "$@"
