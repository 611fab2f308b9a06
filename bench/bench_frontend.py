"""Front-end speed: parse, parse + check, and parse + check + compile of each DSL.md §13 example.

Each figure is the median of ``--repeats`` single calls (after a warm-up), in microseconds.
``compile`` is ``cdp.engine.memory.compile_segment`` with the compile cache emptied before every
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

    @property
    def ok(self) -> bool:
        return self.compile_us < TARGET_US


def _catalogue_for(text: str) -> dict | None:
    return CATALOGUE if "in segment" in text else None


def run(repeats: int = 200) -> list[FrontendRow]:
    rows = []
    for index, text in enumerate(DSL_EXAMPLES, start=1):
        segments = _catalogue_for(text)

        def do_parse(text=text):
            return parse(text)

        def do_check(text=text, segments=segments):
            return check(text, segments=segments)

        def do_compile(text=text, segments=segments):
            memory._CACHE.clear()
            return memory.compile_segment(text, segments=segments)

        do_compile()  # fails loudly here, not inside the timing, if an example does not compile
        compile_median, compile_best = sample_us(do_compile, repeats)
        rows.append(FrontendRow(index, text, median_us(do_parse, repeats), median_us(do_check, repeats),
                                compile_median, compile_best))
    memory._CACHE.clear()
    return rows


def table(rows: list[FrontendRow]) -> str:
    body = [[r.index, f"`{short(r.expression, 58)}`", f"{r.parse_us:.0f}", f"{r.check_us:.0f}",
             f"{r.compile_us:.0f}", f"{r.compile_best_us:.0f}", "yes" if r.ok else "**NO**"] for r in rows]
    worst = max(rows, key=lambda r: r.compile_us)
    body.append(["", "**worst**", "", "", f"{worst.compile_us:.0f}", f"{max(r.compile_best_us for r in rows):.0f}",
                 "yes" if worst.ok else "**NO**"])
    return markdown_table(["#", "DSL.md §13 example", "parse", "+check", "+compile", "+compile (fastest)",
                           "median < 1 ms"], body, align="rlrrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    rows = run(args.repeats)
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
