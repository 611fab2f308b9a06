"""The hook's dumps (bench/streaming_hook/sitecustomize.py) of one bench_streaming run with one
segment count beside 0 (``--segments 500``, ``--rounds 2``): dumps 1–2 and 7–8 frame the sandbox
without segments, 3–6 the other (the order flips each round). Prints ms of CPU per record and
statements per record, for each sandbox and the difference."""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def _load(directory: Path) -> list[dict]:
    files = sorted(directory.glob("hook-*-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [json.loads(p.read_text()) for p in files]


def _window(dumps: list[dict], first: int, last: int) -> tuple[collections.Counter, collections.Counter]:
    a, b = dumps[first - 1], dumps[last - 1]
    cpu = collections.Counter({"PROCESS": b["process"] - a["process"]})
    for key, value in b["cpu"].items():
        cpu[key] = value - a["cpu"].get(key, 0.0)
    for key, value in b["threads"].items():
        cpu[f"thread {key}"] = value - a["threads"].get(key, 0.0)
    before = {(k, s): n for k, s, n in a["statements"]}
    statements = collections.Counter({(k, s): n - before.get((k, s), 0) for k, s, n in b["statements"]})
    return cpu, statements


def _add(x: collections.Counter, y: collections.Counter) -> collections.Counter:
    out = collections.Counter(x)
    for key, value in y.items():
        out[key] = out.get(key, 0) + value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--records", type=int, required=True, help="measured records per sandbox")
    args = parser.parse_args()
    dumps = _load(args.directory)
    none = [_add(a, b) for a, b in zip(_window(dumps, 1, 2), _window(dumps, 7, 8))]
    some = [_add(a, b) for a, b in zip(_window(dumps, 3, 4), _window(dumps, 5, 6))]
    n = args.records
    print(f"{'CPU, ms per record':58s} {'none':>7s} {'segments':>9s} {'diff':>7s}")
    for key in sorted(set(none[0]) | set(some[0])):
        x, y = none[0].get(key, 0.0) * 1000 / n, some[0].get(key, 0.0) * 1000 / n
        print(f"{key:58s} {x:7.2f} {y:9.2f} {y - x:7.2f}")
    print(f"\n{'statements per record (thread, statement)':108s} {'none':>6s} {'segments':>8s}")
    for thread in sorted({k for k, _ in none[1]} | {k for k, _ in some[1]}):
        x = sum(v for (k, _), v in none[1].items() if k == thread) / n
        y = sum(v for (k, _), v in some[1].items() if k == thread) / n
        print(f"{thread + ' (all)':108s} {x:6.2f} {y:8.2f}")
    for key in sorted(set(none[1]) | set(some[1]), key=lambda k: -(some[1].get(k, 0) + none[1].get(k, 0))):
        x, y = none[1].get(key, 0) / n, some[1].get(key, 0) / n
        if x or y:
            print(f"  {key[0][:18]:18s} {key[1]:88s} {x:6.2f} {y:8.2f}")


if __name__ == "__main__":
    main()
