"""Streaming's phases at N segments in thread CPU, with a few timers written into a copy of the code
(issue 15, session 17): bench_streaming_cpu.py's phase timers wrap functions and keep a stack, which
costs more than several of the phases they time, so its exclusive figures lean on the timers; these
are ~14 ``time.thread_time()`` calls a record (~5 µs in all) inside ``StreamingEvaluator``.

    .venv/bin/python bench/bench_streaming_lean.py SRC DEST   # SRC/cdp copied to DEST/cdp, timers added
    PYTHONPATH=DEST .venv/bin/python bench/bench_streaming_cpu.py measure DIR --passes 1 --plain

At exit the measuring process prints one ``LEAN`` line: µs of thread CPU a record in the sandbox whose
name ends in ``-500`` (bench_streaming_cpu's), after its first 20 records (the warm-up: the plan
built), by phase — choosing the segments (the plan's selection, the relevance screen and the events
it converts, the plan itself), the one read (statement and the profile built from its rows), the
polarity, the loop with the predicates, the next instants, the write, the metrics — and the
evaluations a record. SRC must be a ``cdp/`` whose cdp/segments/streaming.py still has the lines the
timers go after (main's at bca8361 and later); else this stops with the line it did not find.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def instrument(path: Path) -> None:
    """Write the timers into ``path`` (a copy's cdp/segments/streaming.py)."""
    text = path.read_text()
    for old, new in _PAIRS:
        if old not in text:
            raise SystemExit(f"not found in {path}: {old!r}")
        text = text.replace(old, new, 1)
    path.write_text(text)


# (a line of the code, the same with the timers): the phases end where the next one starts
_PAIRS: list[tuple[str, str]] = []
_PAIRS.append(('''log = logging.getLogger("cdp.segments")''','''log = logging.getLogger("cdp.segments")
import atexit
from time import thread_time
from collections import defaultdict
ACC = defaultdict(float)
SEEN = [0]
def _dump():
    n = ACC.pop("records", 1) or 1
    print("LEAN thread CPU µs a record: " + "; ".join(f"{k} {v * 1e6 / n:.1f}" for k, v in sorted(ACC.items()) if not k.startswith("#"))
          + f"; all {sum(v for k, v in ACC.items() if not k.startswith('#')) * 1e6 / n:.1f}; evaluations {ACC.get('#evaluations', 0) / n:.1f}; records {n:.0f}")
atexit.register(_dump)'''))
_PAIRS.append(('''        plan = self._load()
        chosen, types = plan.selection(change)''','''        _t = thread_time()
        _on = self.sandbox.endswith("-500")
        if _on:
            SEEN[0] += 1
            _on = self._on = SEEN[0] > 20
            if _on:
                ACC["records"] += 1
        plan = self._load()
        chosen, types = plan.selection(change)'''))
_PAIRS.append(('''                chosen, types = kept, plan.kept_types(kept)
        return self._evaluate(''','''                chosen, types = kept, plan.kept_types(kept)
        if _on:
            ACC["a choose (selection, screen)"] += thread_time() - _t
        return self._evaluate('''))
_PAIRS.append(('''        profile, members, stored, saved = _load_with_state(self.connection, profile_pk, plan.schema, event_types,
                                                           listed, listed_parameters)''','''        _t = thread_time()
        profile, members, stored, saved = _load_with_state(self.connection, profile_pk, plan.schema, event_types,
                                                           listed, listed_parameters)
        _on = getattr(self, "_on", False) and self.sandbox.endswith("-500")
        if _on:
            ACC["b read (statement + profile)"] += thread_time() - _t
        _t = thread_time()'''))
_PAIRS.append(('''        verdicts: dict[int, bool] = {}''','''        if _on:
            ACC["c polarity"] += thread_time() - _t
        verdicts: dict[int, bool] = {}'''))
_PAIRS.append(('''        before = perf_counter()
        for i in chosen:''','''        _loop = thread_time()
        before = perf_counter()
        for i in chosen:'''))
_PAIRS.append(('''        earliest = earliest_merged(''','''        if _on:
            ACC["d loop with predicates"] += thread_time() - _loop
            ACC["#evaluations"] += len(spent)
        _t = thread_time()
        earliest = earliest_merged('''))
_PAIRS.append(('''        self.evaluations += len(spent)
        evaluated = perf_counter()''','''        self.evaluations += len(spent)
        if _on:
            ACC["e next instants"] += thread_time() - _t
        _w = thread_time()
        evaluated = perf_counter()'''))
_PAIRS.append(('''        if self.metrics is not None:
            self.metrics.evaluated(self.sandbox, spent)''','''        _t = thread_time()
        if _on:
            ACC["f write"] += _t - _w
        if self.metrics is not None:
            self.metrics.evaluated(self.sandbox, spent)'''))
_PAIRS.append(('''        return changed

    def _unchangeable''','''        if _on:
            ACC["g metrics"] += thread_time() - _t
        return changed

    def _unchangeable'''))


def main(argv: list[str]) -> int:
    source, destination = Path(argv[0]), Path(argv[1])
    if (destination / "cdp").exists():
        shutil.rmtree(destination / "cdp")
    shutil.copytree(source / "cdp", destination / "cdp")
    instrument(destination / "cdp" / "segments" / "streaming.py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
