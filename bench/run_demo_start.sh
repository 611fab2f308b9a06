#!/usr/bin/env bash
# How long `make run`'s first start, a later start and `cdp demo` take (bench/bench_demo_start.py):
#
#   bash bench/run_demo_start.sh [--repeat N] [--record]
#
# Uses the project's own environment (.venv at the repository root); SQLite in temporary folders.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_demo_start.sh bench_demo_start.py "$@"
