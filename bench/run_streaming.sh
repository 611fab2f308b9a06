#!/usr/bin/env bash
# Streaming segments on ingest (bench/bench_streaming.py; see bench/README.md):
#   bash bench/run_streaming.sh [--backend sqlite|postgresql|both] [--segments 100,500] [--requests N] [--record]
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_streaming.sh bench_streaming.py "$@"
