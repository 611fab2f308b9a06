"""Front-end speed: parse, parse + check, and parse + check + compile of each DSL.md §13 example.

Each figure is the median of ``--repeats`` single calls (after a warm-up), in microseconds.
Every call is cold: ``parse`` keeps an LRU cache of trees by text, which is emptied before each
call (the warm column shows parse + check with that cache kept, as when a catalogue is
re-checked). ``compile`` is ``cdp.engine.memory.compile_segment`` with the compile cache emptied before every
call (``compile_predicate`` caches by canonical text, which would measure a dictionary lookup);
it includes parse and check, because compile_segment does both. Target: each under 1 ms.

    python bench/bench_frontend.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from _common import CATALOGUE, DSL_EXAMPLES, markdown_table, median_us, sample_us, short

from cdp.dsl import check, parse
from cdp.dsl.parser import clear_parse_cache
from cdp.engine import memory

TARGET_US = 1000.0


@dataclass
class FrontendRow:
    index: int
    expression: str
    parse_us: float
    check_us: float  # parse + check
    compile_us: float  # parse + check + compile
    compile_best_us: float  # the fastest of the compile runs: the floor, when the machine is noisy
    warm_check_us: float = 0.0  # parse + check with the parse cache kept

    @property
    def ok(self) -> bool:
        return self.compile_us < TARGET_US

    @property
    def check_ok(self) -> bool:
        return self.check_us < TARGET_US


def _catalogue_for(text: str) -> dict | None:
    return CATALOGUE if "in segment" in text else None


def run(repeats: int = 200) -> list[FrontendRow]:
    rows = []
    for index, text in enumerate(DSL_EXAMPLES, start=1):
        segments = _catalogue_for(text)

        def do_parse(text=text):
            clear_parse_cache()
            return parse(text)

        def do_check(text=text, segments=segments):
            clear_parse_cache()
            return check(text, segments=segments)

        def do_warm_check(text=text, segments=segments):
            return check(text, segments=segments)

        def do_compile(text=text, segments=segments):
            clear_parse_cache()
            memory._CACHE.clear()
            return memory.compile_segment(text, segments=segments)

        do_compile()  # fails loudly here, not inside the timing, if an example does not compile
        compile_median, compile_best = sample_us(do_compile, repeats)
        rows.append(FrontendRow(index, text, median_us(do_parse, repeats), median_us(do_check, repeats),
                                compile_median, compile_best, median_us(do_warm_check, repeats)))
    memory._CACHE.clear()
    return rows


def table(rows: list[FrontendRow]) -> str:
    body = [[r.index, f"`{short(r.expression, 58)}`", f"{r.parse_us:.0f}", f"{r.check_us:.0f}",
             "yes" if r.check_ok else "**NO**", f"{r.warm_check_us:.0f}",
             f"{r.compile_us:.0f}", f"{r.compile_best_us:.0f}", "yes" if r.ok else "**NO**"] for r in rows]
    worst = max(rows, key=lambda r: r.compile_us)
    worst_check = max(rows, key=lambda r: r.check_us)
    body.append(["", "**worst**", "", f"{worst_check.check_us:.0f}", "yes" if worst_check.check_ok else "**NO**", "",
                 f"{worst.compile_us:.0f}", f"{max(r.compile_best_us for r in rows):.0f}",
                 "yes" if worst.ok else "**NO**"])
    return markdown_table(["#", "DSL.md §13 example", "parse", "+check", "< 1 ms", "+check (warm)", "+compile",
                           "+compile (fastest)", "< 1 ms"], body, align="rlrrlrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    rows = run(args.repeats)
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
