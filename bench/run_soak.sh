#!/usr/bin/env bash
# Load and soak (bench/bench_soak.py; see bench/README.md):
#
#   bash bench/run_soak.sh [--minutes 3] [--clients 4] [--batch 10] [--backends sqlite,postgresql] [--record]
#
# Uses the project's own environment (.venv at the repository root). Exit 1 when a record is unaccounted for, streaming and batch disagree, or a membership change of the activated segment did not reach the webhook receiver.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_soak.sh bench_soak.py "$@"
