# Sourced by the bench/run_*.sh scripts that use the project's own environment (.venv at the
# repository root, made by `make test`): `run_in_project_env RUNNER BENCH_SCRIPT ARGS…` checks the
# environment, records the command line for bench/RESULTS.md (CDP_BENCH_COMMAND) and runs the
# Python benchmark from the repository root.
run_in_project_env() {
    local runner="$1" script="$2"
    shift 2
    local bench_dir root vpy
    bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    root="$(cd "$bench_dir/.." && pwd)"
    vpy="$root/.venv/bin/python"
    if [[ ! -x "$vpy" ]]; then
        echo "bench: $vpy not found; create the project's environment first (make test, or: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')" >&2
        exit 1
    fi
    cd "$root"
    export CDP_BENCH_COMMAND="bash bench/$runner${*:+ $*}"
    exec "$vpy" "$bench_dir/$script" "$@"
}
