"""A hook for ``cdp serve`` under bench/bench_streaming.py (issue 15): where the server's CPU per
record goes. Put this directory first on ``PYTHONPATH`` and set ``STREAMING_HOOK_DIR`` (not a
``CDP_`` name: the bench passes only those it sets to the server) and
``CDP_BENCH_SIGNAL_MEASURED=1``; at each SIGUSR1 (before and after each sandbox's measured
requests) the server writes ``<dir>/hook-<pid>-<n>.json``: its CPU per Python thread (from /proc),
the thread CPU of streaming's phases and of the delivery loop, the collector's time, and the SQL
statements run so far per thread and statement (SQLAlchemy's ``before_cursor_execute``).
bench/streaming_hook/report.py subtracts the sandboxes' windows.

    STREAMING_HOOK_DIR=/tmp/hook CDP_BENCH_SIGNAL_MEASURED=1 PYTHONPATH=bench/streaming_hook \\
        bash bench/run_streaming.sh --backend sqlite --segments 500 --people 200 --requests 100 --rounds 2
    .venv/bin/python bench/streaming_hook/report.py /tmp/hook --records 200
"""

import os

if os.environ.get("STREAMING_HOOK_DIR"):
    import collections
    import gc
    import json
    import re
    import signal
    import threading
    import time

    _statements: collections.Counter = collections.Counter()
    _cpu: collections.Counter = collections.Counter()
    _dumps = [0]
    _gc_started: dict[int, float] = {}

    def _thread_kind(name: str) -> str:
        return re.sub(r"[0-9_]+", "", name)

    def _count_statements() -> None:
        import sqlalchemy as sa
        from sqlalchemy import event

        @event.listens_for(sa.engine.Engine, "before_cursor_execute")
        def _count(conn, cursor, statement, parameters, context, executemany):
            shape = re.sub(r"\s+", " ", statement.strip())[:90]
            _statements[(_thread_kind(threading.current_thread().name), shape)] += 1

    def _collector(phase: str, info: dict) -> None:
        me = threading.get_ident()
        if phase == "start":
            _gc_started[me] = time.thread_time()
        elif me in _gc_started:
            _cpu["gc"] += time.thread_time() - _gc_started.pop(me)

    def _timed(owner, name: str, label: str) -> None:
        inner = getattr(owner, name, None)
        if inner is None:  # not in this version of the code
            return

        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                _cpu[label] += time.thread_time() - started
        setattr(owner, name, timed)

    def _time_phases() -> None:
        """After the app imported them (at the first signal): thread CPU of these functions."""
        import cdp.activation.worker as worker
        import cdp.ingestion.service as ingestion
        import cdp.ingestion.writer as writer
        import cdp.observability.metrics as metrics
        import cdp.segments.streaming as streaming
        import cdp.storage.database as database

        _timed(streaming.StreamingEvaluator, "profile_changed", "streaming (all)")
        _timed(streaming.StreamingEvaluator, "_write", "streaming: write")
        _timed(streaming, "_load_with_state", "streaming: read")
        for name in ("next_change", "earliest_change", "earliest_merged"):
            _timed(streaming, name, "streaming: next instants")
        _timed(metrics.Metrics, "evaluated", "streaming: per-segment metrics")
        _timed(writer.Writer, "apply_many", "ingestion: apply_many (streaming included)")
        _timed(ingestion, "ingest_records", "ingestion: ingest_records (all)")
        _timed(database, "commit_now", "commit_now")
        _timed(worker.DeliveryWorker, "pump_once", "delivery: pump_once")
        _timed(worker.DeliveryWorker, "_cycle", "delivery: cycle")

    def _per_thread() -> dict[str, float]:
        found: dict[str, float] = {}
        for thread in threading.enumerate():
            try:
                with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = _thread_kind(thread.name)
            found[kind] = found.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    def _dump(signum, frame) -> None:
        if not _dumps[0]:
            _time_phases()
        _dumps[0] += 1
        path = os.path.join(os.environ["STREAMING_HOOK_DIR"], f"hook-{os.getpid()}-{_dumps[0]}.json")
        with open(path, "w") as out:
            json.dump({"process": time.process_time(), "threads": _per_thread(), "cpu": dict(_cpu),
                       "statements": [[kind, shape, n] for (kind, shape), n in _statements.items()]}, out)

    os.makedirs(os.environ["STREAMING_HOOK_DIR"], exist_ok=True)
    _count_statements()
    gc.callbacks.append(_collector)
    signal.signal(signal.SIGUSR1, _dump)
