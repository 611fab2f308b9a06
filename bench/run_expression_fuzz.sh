#!/usr/bin/env bash
# Expression fuzzing at scale (bench/bench_expression_fuzz.py; see bench/README.md):
#
#   bash bench/run_expression_fuzz.sh [--inputs 100000] [--seed 1] [--record]
#
# Uses the project's own environment (.venv at the repository root). Exit 1 when an input crashed.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_expression_fuzz.sh bench_expression_fuzz.py "$@"
