#!/usr/bin/env bash
# The segments benchmark (bench/bench_segments.py; see bench/README.md):
#
#   bash bench/run_segments.sh [--profiles N] [--segments N] [--record]
#
# Uses the project's own environment (.venv at the repository root) and PostgreSQL's server
# binaries for a throwaway cluster; shares bench/data/ (the generated profiles) with run_sql.sh.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_segments.sh bench_segments.py "$@"
