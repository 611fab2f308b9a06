#!/usr/bin/env bash
# Ingestion against bare baselines (bench/bench_baseline.py; see bench/README.md):
#   bash bench/run_baseline.sh [--backend sqlite|postgresql|both] [--csv-rows N] [--requests N] [--only stream,csv] [--workers 1,2] [--record]
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_baseline.sh bench_baseline.py "$@"
