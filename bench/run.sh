#!/usr/bin/env bash
# One command for the whole benchmark suite:
#
#   bash bench/run.sh [--profiles N] [--repeats N] [--rounds N] [--record]
#
# Creates bench/.venv on first use (the project in editable mode with its bench extra: the
# comparison libraries rule-engine, cel-python and json-logic-qubit, installed ONLY there), then runs
# bench/run_all.py with the given arguments. A comparison library that fails to install is
# reported loudly and skipped; the rest of the suite still runs.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VENV="$BENCH_DIR/.venv"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "bench: creating $VENV with $("$PY" --version 2>&1)" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
VPY="$VENV/bin/python"

# The project itself (editable, so the benchmark always measures the working tree) with its
# `bench` extra; when that fails as a whole, the project with its PostgreSQL driver, and the
# comparison libraries one by one below.
if ! "$VPY" -c "import cdp.engine, cdp.dsl, psycopg, httpx2" 2>/dev/null; then
    echo "bench: installing the project from $ROOT with its bench extra" >&2
    "$VPY" -m pip install -q -e "$ROOT[bench]" >&2 || "$VPY" -m pip install -q -e "$ROOT[postgresql]" >&2
fi

# Comparison libraries: distribution name → module it provides.
failed=()
for spec in "rule-engine:rule_engine" "cel-python:celpy" "json-logic-qubit:json_logic"; do
    dist="${spec%%:*}"
    module="${spec##*:}"
    if "$VPY" -c "import $module" 2>/dev/null; then
        continue
    fi
    echo "bench: installing $dist" >&2
    if ! "$VPY" -m pip install -q "$dist" >&2 || ! "$VPY" -c "import $module" 2>/dev/null; then
        echo "" >&2
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
        echo "!!! bench: FAILED to install $dist — its comparison will be SKIPPED !!!" >&2
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
        echo "" >&2
        failed+=("$dist")
    fi
done

cd "$ROOT"
export CDP_BENCH_COMMAND="bash bench/run.sh${*:+ $*}"
exec "$VPY" "$BENCH_DIR/run_all.py" "$@"
