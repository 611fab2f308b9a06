#!/usr/bin/env bash
# The API fuzzer with fresh requests each run and more of them than the suite's bounded, seeded run:
#   bash bench/run_fuzz.sh [EXAMPLES_PER_OPERATION]   (default 200; SQLite and PostgreSQL)
# Findings print as in the suite: schemathesis' report with a curl command per failing request.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ ! -x .venv/bin/python ]]; then
    echo "bench: .venv/bin/python not found; run make test first" >&2
    exit 1
fi
FUZZ_SEED=random FUZZ_EXAMPLES="${1:-200}" exec .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/api/test_openapi_fuzz.py
