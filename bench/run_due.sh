#!/usr/bin/env bash
# The scheduler's waves of due re-evaluations (bench/bench_due.py; see bench/README.md):
#   bash bench/run_due.sh [--backend sqlite|postgresql|both] [--scheduled 1000000] [--waves 100,1000] [--record]
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_due.sh bench_due.py "$@"
