#!/usr/bin/env bash
# The web page benchmark (bench/bench_web.py; see bench/README.md):
#
#   bash bench/run_web.sh [--repeats N] [--record]
#
# Uses the project's own environment (.venv at the repository root: Playwright) and the system's
# Chromium (/usr/bin/chromium or CDP_CHROMIUM; never `playwright install`).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_web.sh bench_web.py "$@"
