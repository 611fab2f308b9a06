#!/usr/bin/env bash
# Streaming ingestion's CPU per record, in process (bench/bench_ingest_cpu.py): the app on an
# SQLite file through FastAPI's TestClient, requests of 500 records; plus validation and the
# response's serialisation alone.
#
#   bash bench/run_ingest_cpu.sh [--records 5000] [--rounds 2] [--profile]
#
# To measure another checkout's code with the same script: PYTHONPATH=/path/to/checkout bash bench/run_ingest_cpu.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/_project_env.sh"
run_in_project_env run_ingest_cpu.sh bench_ingest_cpu.py "$@"
