"""In-memory evaluation: our compiled predicates against hand-written Python and rule engines.

On N generated Luma profiles (cdp.demo.generate_profiles, loaded once with load_profile):

* segment (a): ``loyalty.tier in ["silver", "gold"] and home_address.country = "US" and
  loyalty.points > 500`` — ours, a hand-written function, and the general-purpose engines
  rule-engine, cel-python and json-logic-qubit, each given the representation it needs (built
  once, outside the timed loop);
* segment (b): "Gift-giving cart abandoners" (DSL.md §13) — ours and a hand-written function;
  the engines are discussed (and, where they can express it at all, measured on a subset).

Every contender must return exactly the same profile ids (asserted). Ours and hand-written are
timed in ``--rounds`` alternating rounds over all N profiles; the figure is the median round.
The timed loop is the same for both: ``[p.id for p in profiles if predicate(p, as_of)]``.

    python bench/bench_memory.py [--profiles 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from _common import SEGMENT_A, SEGMENT_B, banner, fmt_rate, markdown_table, timed

from cdp.demo import DEFAULT_AS_OF, generate_profiles
from cdp.engine import compile_predicate, load_profile

TARGET_RATIO = 0.8  # ours / hand-written throughput
LIBRARY_BUDGET_S = 30.0  # per library and segment: extra rounds only while under this
PROBE = 200  # profiles timed first to size the prefix a slow engine is measured on for (b)

# ---- hand-written predicates ------------------------------------------------------------------
#
# What a user would otherwise write: a Python function over the plain profile document (the
# JSON of SPEC.md: nested attributes, a list of events), its data prepared once like ours (the
# events' timestamps parsed to datetimes and the events put in time order, untimed), with the
# as_of-dependent cut-offs computed once (as our compiled code does), and the same answers as
# DSL.md's three-valued logic (a missing attribute never satisfies `!=` or `>`). It reads
# nothing of cdp's own representation (LoadedProfile), so it does not share its costs.

_SILVER_GOLD = ("silver", "gold")


def plain_document(document: dict) -> dict:
    """The document as a user's code would hold it: timestamps parsed, events in time order."""
    events = [{**e, "timestamp": datetime.fromisoformat(e["timestamp"])} for e in document.get("events") or ()]
    events.sort(key=lambda e: e["timestamp"])
    return {"id": document["id"], "attributes": document.get("attributes") or {}, "events": events}


def hand_a(d, as_of):
    a = d["attributes"]
    loyalty = a.get("loyalty") or {}
    if loyalty.get("tier") not in _SILVER_GOLD or (a.get("home_address") or {}).get("country") != "US":
        return False
    points = loyalty.get("points")
    return points is not None and points > 500


def make_hand_b(as_of: datetime):
    week_ago = as_of - timedelta(days=7)
    one_day = timedelta(days=1)

    def hand_b(d, as_of=as_of):
        a = d["attributes"]
        if (a.get("loyalty") or {}).get("tier") is None:
            return False
        category = a.get("preferred_category")
        size = a.get("preferred_size")
        if category is None or size is None:  # `!=` against a missing value is never TRUE
            return False
        events = d["events"]
        carts = [e["timestamp"] for e in events if e["type"] == "addToCart" and week_ago < e["timestamp"] <= as_of]
        if not carts:
            return False
        for e in events:
            if e["type"] == "addToCart" and week_ago < e["timestamp"] <= as_of:
                product = e.get("product") or {}
                c, s = product.get("category"), product.get("size")
                if c is not None and s is not None and c != category and s != size:
                    break
        else:
            return False
        purchases = [e["timestamp"] for e in events if e["type"] == "purchase"]
        for t in carts:  # then no purchase in (t, min(t + 1 day, as_of)]
            limit = min(t + one_day, as_of)
            if not any(t < bought <= limit for bought in purchases):
                return True
        return False

    return hand_b


# ---- the general-purpose engines: representations and rules ----------------------------------


def flat_attributes(p) -> dict:
    """Profile attributes with `_` for `.` (none of the engines takes dots in a variable name)."""
    return {k.replace(".", "_"): v for k, v in p.attributes.items()}


class Library:
    """One comparison engine: how to prepare data, how to evaluate (a), and (b) if it can."""

    name = ""
    module = ""
    can_express_b = ""  # the note printed for segment (b)
    expresses_b = False  # True when prepare_b / evaluate_b are implemented

    def prepare_a(self, profiles):  # -> list of (id, data)
        raise NotImplementedError

    def evaluate_a(self, rows):  # -> list of ids
        raise NotImplementedError

    def prepare_b(self, profiles, as_of):
        return None

    def evaluate_b(self, rows):
        return None


class RuleEngine(Library):
    name = "rule-engine"
    module = "rule_engine"
    expresses_b = True
    can_express_b = (
        "expressible only as nested list comprehensions over the whole event list "
        "(`[c for c in events if … and [q for q in events if …].is_empty]`): no sequence or "
        "`then` operator, no per-type or time index (O(carts × events) per profile), and no "
        "three-valued logic (`null != \"x\"` is true, so every field needs an explicit null guard)"
    )

    def __init__(self):
        import rule_engine

        self.lib = rule_engine
        context = rule_engine.Context(default_value=None)
        self.rule_a = rule_engine.Rule(
            'loyalty_tier in ["silver", "gold"] and home_address_country == "US" '
            "and loyalty_points != null and loyalty_points > 500", context=context)
        self.rule_b = rule_engine.Rule(
            "loyalty_tier != null"
            " and [e for e in events if e['type'] == 'addToCart' and e['timestamp'] > week_ago"
            "      and e['product_category'] != null and preferred_category != null"
            "      and e['product_category'] != preferred_category"
            "      and e['product_size'] != null and preferred_size != null"
            "      and e['product_size'] != preferred_size].length > 0"
            " and [c for c in events if c['type'] == 'addToCart' and c['timestamp'] > week_ago"
            "      and [q for q in events if q['type'] == 'purchase' and q['timestamp'] > c['timestamp']"
            "           and q['timestamp'] <= c['timestamp'] + t'P1D' and q['timestamp'] <= as_of].is_empty"
            "     ].length > 0", context=context)

    def prepare_a(self, profiles):
        return [(p.id, flat_attributes(p)) for p in profiles]

    def evaluate_a(self, rows):
        matches = self.rule_a.matches
        return [pid for pid, data in rows if matches(data)]

    def prepare_b(self, profiles, as_of):
        keys = ("type", "timestamp", "product.category", "product.size")
        rows = []
        for p in profiles:
            data = flat_attributes(p)
            # every event carries every key it is asked about (a missing key is an error there)
            data["events"] = [{k.replace(".", "_"): e.get(k) for k in keys} for e in p.events if e["timestamp"] <= as_of]
            data["as_of"] = as_of
            data["week_ago"] = as_of - timedelta(days=7)
            rows.append((p.id, data))
        return rows

    def evaluate_b(self, rows):
        matches = self.rule_b.matches
        return [pid for pid, data in rows if matches(data)]


class Cel(Library):
    name = "cel-python"
    module = "celpy"
    expresses_b = True
    can_express_b = (
        "expressible only as nested `exists` macros over the whole event list "
        "(`events.exists(c, … && !events.exists(q, q.ts > c.ts && q.ts <= c.ts + duration(\"86400s\")))`): "
        "no sequence operator, no per-type or time index (O(carts × events) per profile); a missing "
        "field is an error, so every field needs a presence guard"
    )

    # CEL's best mode here: CompiledRunner transpiles to Python (about 8× faster than the default
    # InterpretedRunner on (a)). Its `has()` returns a Python bool that its own `&&` rejects in
    # cel-python 0.5, so presence is tested with `"key" in map`, which means the same.
    RULE_A = ('"loyalty_tier" in p && p.loyalty_tier in ["silver", "gold"]'
              ' && "home_address_country" in p && p.home_address_country == "US"'
              ' && "loyalty_points" in p && p.loyalty_points > 500')
    RULE_B = ('"loyalty_tier" in p'
              ' && events.exists(e, e.type == "addToCart" && e.ts > week_ago'
              '      && "product_category" in e && "preferred_category" in p'
              '      && e.product_category != p.preferred_category'
              '      && "product_size" in e && "preferred_size" in p && e.product_size != p.preferred_size)'
              ' && events.exists(c, c.type == "addToCart" && c.ts > week_ago'
              '      && !events.exists(q, q.type == "purchase" && q.ts > c.ts'
              '           && q.ts <= c.ts + duration("86400s") && q.ts <= as_of))')

    def __init__(self):
        import celpy
        from celpy import celtypes

        self.celpy = celpy
        self.ct = celtypes
        env = celpy.Environment(runner_class=celpy.CompiledRunner)
        self.program_a = env.program(env.compile(self.RULE_A))
        self.program_b = env.program(env.compile(self.RULE_B))

    def to_cel(self, value):
        ct = self.ct
        if isinstance(value, bool):
            return ct.BoolType(value)
        if isinstance(value, int):
            return ct.IntType(value)
        if isinstance(value, float):
            return ct.DoubleType(value)
        if isinstance(value, str):
            return ct.StringType(value)
        if isinstance(value, datetime):
            return ct.TimestampType(value)
        if isinstance(value, date):
            return ct.TimestampType(datetime(value.year, value.month, value.day, tzinfo=timezone.utc))
        if isinstance(value, (list, tuple)):
            return ct.ListType([self.to_cel(v) for v in value])
        if isinstance(value, dict):
            return ct.MapType({ct.StringType(k): self.to_cel(v) for k, v in value.items() if v is not None})
        raise TypeError(f"no CEL form for {type(value).__name__}")

    def prepare_a(self, profiles):
        return [(p.id, {"p": self.to_cel(flat_attributes(p))}) for p in profiles]

    def evaluate_a(self, rows):
        evaluate = self.program_a.evaluate
        # evaluate returns a celtypes.BoolType (an int subclass), or raises on an error
        return [pid for pid, activation in rows if evaluate(activation) == True]  # noqa: E712

    def prepare_b(self, profiles, as_of):
        rows = []
        for p in profiles:
            events = [{"type": e["type"], "ts": e["timestamp"], "product_category": e.get("product.category"),
                       "product_size": e.get("product.size")} for e in p.events if e["timestamp"] <= as_of]
            # (to_cel leaves out the keys whose value is None: a missing field is absent)
            rows.append((p.id, {"p": self.to_cel(flat_attributes(p)), "events": self.to_cel(events),
                                "as_of": self.to_cel(as_of), "week_ago": self.to_cel(as_of - timedelta(days=7))}))
        return rows

    def evaluate_b(self, rows):
        evaluate = self.program_b.evaluate
        return [pid for pid, activation in rows if evaluate(activation) == True]  # noqa: E712


class JsonLogic(Library):
    name = "json-logic-qubit"
    module = "json_logic"
    can_express_b = (
        "cannot express it: inside `some`/`all`/`none`/`filter` the data is the array element "
        "only, so an event condition cannot read the profile (`preferred_category`) nor an "
        "earlier event (the cart's timestamp for \"no purchase within 1 day after it\"); it also "
        "has no date or duration type (only numbers and strings) and no sequence operator"
    )

    def __init__(self):
        from json_logic import jsonLogic

        self.json_logic = jsonLogic
        self.rule_a = {"and": [
            {"in": [{"var": "loyalty_tier"}, ["silver", "gold"]]},
            {"==": [{"var": "home_address_country"}, "US"]},
            {">": [{"var": "loyalty_points"}, 500]},  # json-logic's `>` is false on null
        ]}

    def prepare_a(self, profiles):
        return [(p.id, flat_attributes(p)) for p in profiles]

    def evaluate_a(self, rows):
        json_logic, rule = self.json_logic, self.rule_a
        return [pid for pid, data in rows if json_logic(rule, data) is True]


LIBRARIES = (RuleEngine, Cel, JsonLogic)


# ---- running ----------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    seconds: list[float] = field(default_factory=list)  # one per timed round
    profiles: int = 0
    note: str = ""
    reference: "Contender | None" = None  # ours on the same subset, when this ran on a subset

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.profiles / self.median


@dataclass
class SegmentResult:
    key: str  # "a" or "b"
    text: str
    members: int
    ours: Contender
    hand: Contender
    others: list[Contender] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (library, what it lacks)

    @property
    def ratio(self) -> float:
        """Throughput ours / hand-written (higher is better; 1.0 = as fast)."""
        return self.hand.median / self.ours.median

    @property
    def ok(self) -> bool:
        return self.ratio >= TARGET_RATIO


@dataclass
class MemoryResult:
    profiles: int
    events: int
    generate_s: float
    load_s: float
    segments: list[SegmentResult]
    skipped: list[str]


def log(message: str) -> None:
    print(f"[bench_memory] {message}", file=sys.stderr, flush=True)


def load_libraries() -> tuple[list[Library], list[str]]:
    libraries, skipped = [], []
    for cls in LIBRARIES:
        try:
            libraries.append(cls())
        except ImportError as exc:
            print(banner(f"{cls.name} is NOT INSTALLED ({exc}); its comparison is SKIPPED"), file=sys.stderr)
            skipped.append(cls.name)
    return libraries, skipped


def race(ours_fn, hand_fn, profiles, documents, as_of, rounds: int) -> tuple[Contender, Contender, list]:
    """Ours over the loaded profiles, hand-written over the plain documents (the same people)."""
    ours = Contender("cdp (compiled)", profiles=len(profiles))
    hand = Contender("hand-written Python", profiles=len(profiles))
    expected = None

    def run_ours():
        return [p.id for p in profiles if ours_fn(p, as_of)]

    def run_hand():
        return [d["id"] for d in documents if hand_fn(d, as_of)]

    for r in range(rounds):
        order = [(ours, run_ours), (hand, run_hand)]
        if r % 2:
            order.reverse()  # alternate who goes first, so drift hurts both alike
        for contender, run_one in order:
            seconds, ids = timed(run_one)
            contender.seconds.append(seconds)
            if expected is None:
                expected = ids
            elif ids != expected:
                raise AssertionError(f"{contender.name} selected {len(ids)} profiles, expected {len(expected)}; "
                                     f"first differences: {sorted(set(ids) ^ set(expected))[:10]}")
    return ours, hand, expected


def run_library(name: str, evaluate, rows, expected: list, budget_s: float, max_rounds: int) -> Contender:
    """At least one timed pass (asserting the ids), more while the budget allows."""
    contender = Contender(name, profiles=len(rows))
    while len(contender.seconds) < max_rounds:
        seconds, ids = timed(lambda: evaluate(rows))
        if ids != expected:
            raise AssertionError(f"{name} selected {len(ids)} profiles, expected {len(expected)}; "
                                 f"first differences: {sorted(set(ids) ^ set(expected))[:10]}")
        contender.seconds.append(seconds)
        if sum(contender.seconds) + seconds > budget_s:
            break
    return contender


def affordable_prefix(prepare, evaluate, profiles, seconds_per_pass: float) -> int:
    """How many profiles (a prefix) one pass of a slow engine can cover in about that time."""
    probe = profiles[:PROBE]
    rows = prepare(probe)
    elapsed, _ids = timed(lambda: evaluate(rows))
    per_profile = max(elapsed / max(len(probe), 1), 1e-9)
    return max(len(probe), min(len(profiles), int(seconds_per_pass / per_profile)))


def run(profiles_count: int = 100_000, rounds: int = 5, seed: int = 42) -> MemoryResult:
    as_of = DEFAULT_AS_OF
    log(f"generating {profiles_count:,} profiles (seed {seed})")
    start = time.perf_counter()
    documents = list(generate_profiles(profiles_count, seed=seed, as_of=as_of))
    generate_s = time.perf_counter() - start
    log(f"loading them with load_profile ({generate_s:.1f} s to generate)")
    load_s, profiles = timed(lambda: [load_profile(d) for d in documents])
    documents = [plain_document(d) for d in documents]  # the hand-written functions' data, prepared once
    events = sum(len(p.events) for p in profiles)
    log(f"loaded {len(profiles):,} profiles, {events:,} events in {load_s:.1f} s")

    libraries, skipped = load_libraries()
    results = []

    # (a): every engine over all the profiles -----------------------------------------------------
    ours_a = compile_predicate(SEGMENT_A)
    log(f"segment (a): {rounds} alternating rounds, ours vs hand-written")
    ours, hand, expected = race(ours_a, hand_a, profiles, documents, as_of, rounds)
    seg_a = SegmentResult("a", SEGMENT_A, len(expected), ours, hand)
    for library in libraries:
        log(f"segment (a): {library.name} (preparing its representation of {len(profiles):,} profiles)")
        rows = library.prepare_a(profiles)
        log(f"segment (a): {library.name} (evaluating)")
        seg_a.others.append(run_library(library.name, library.evaluate_a, rows, expected, LIBRARY_BUDGET_S, rounds))
        del rows
    results.append(seg_a)

    # (b): ours and hand-written over all; engines that can express it over an affordable prefix --
    ours_b = compile_predicate(SEGMENT_B)
    log(f"segment (b): {rounds} alternating rounds, ours vs hand-written")
    ours, hand, expected = race(ours_b, make_hand_b(as_of), profiles, documents, as_of, rounds)
    seg_b = SegmentResult("b", SEGMENT_B, len(expected), ours, hand)
    for library in libraries:
        seg_b.notes.append((library.name, library.can_express_b))
        if not library.expresses_b:
            continue
        prepare = lambda ps, library=library: library.prepare_b(ps, as_of)  # noqa: E731
        size = affordable_prefix(prepare, library.evaluate_b, profiles, LIBRARY_BUDGET_S / 2)
        subset = profiles[:size]
        subset_expected = [p.id for p in subset if ours_b(p, as_of)]
        log(f"segment (b): {library.name} on the first {size:,} profiles")
        contender = run_library(library.name, library.evaluate_b, prepare(subset), subset_expected,
                                LIBRARY_BUDGET_S, rounds)
        if size < len(profiles):
            contender.note = f"first {size:,} profiles"
            # ours on exactly the same prefix, so the ratio compares like with like
            contender.reference = run_library("cdp (compiled)", lambda ps: [p.id for p in ps if ours_b(p, as_of)],
                                              subset, subset_expected, LIBRARY_BUDGET_S, rounds)
        seg_b.others.append(contender)
    results.append(seg_b)
    return MemoryResult(len(profiles), events, generate_s, load_s, results, skipped)


# ---- reporting --------------------------------------------------------------------------------


def fmt_ratio(ratio: float) -> str:
    """0.97× for ratios near 1; 1/180× for engines two or more orders of magnitude behind."""
    return f"{ratio:.2f}×" if ratio >= 0.095 else f"1/{1 / ratio:,.0f}×"


def table(result: MemoryResult) -> str:
    rows = []
    for seg in result.segments:
        label = f"({seg.key})"
        rows.append([label, "cdp compiled predicate", f"{seg.ours.median * 1e3:.1f}", fmt_rate(seg.ours.rate),
                     "1.00×", f"{seg.members:,}"])
        rows.append([label, "hand-written Python", f"{seg.hand.median * 1e3:.1f}", fmt_rate(seg.hand.rate),
                     f"{seg.hand.rate / seg.ours.rate:.2f}×", f"{seg.members:,}"])
        for other in seg.others:
            reference = (other.reference or seg.ours).rate
            where = f" ({other.note})" if other.note else ""
            rows.append([label, other.name + where, f"{other.median * 1e3:.1f}", fmt_rate(other.rate),
                         fmt_ratio(other.rate / reference), "same ids"])
    return markdown_table(["seg", "evaluator", "ms / pass (median)", "profiles/s", "vs cdp", "members"], rows,
                          align="llrrrr")


def summary(result: MemoryResult) -> str:
    lines = [
        f"{result.profiles:,} generated profiles, {result.events:,} events "
        f"({result.events / max(result.profiles, 1):.1f} per profile); generated in {result.generate_s:.1f} s, "
        f"loaded with load_profile in {result.load_s:.1f} s "
        f"({result.load_s / max(result.profiles, 1) * 1e6:.0f} µs per profile, "
        f"{result.profiles / max(result.load_s, 1e-9):,.0f} profiles/s). The hand-written functions read the plain "
        "documents (timestamps parsed and events in time order, once, untimed); ours the loaded profiles.",
        "",
    ]
    for seg in result.segments:
        verdict = "PASS" if seg.ok else "**MISS**"
        lines.append(f"- ({seg.key}) throughput ours / hand-written = **{seg.ratio:.2f}** "
                     f"(target ≥ {TARGET_RATIO}: {verdict}); median of {len(seg.ours.seconds)} alternating rounds "
                     f"(ours {', '.join(f'{s * 1e3:.0f}' for s in seg.ours.seconds)} ms; "
                     f"hand {', '.join(f'{s * 1e3:.0f}' for s in seg.hand.seconds)} ms)")
        for other in seg.others:
            reference = other.reference or seg.ours
            lines.append(f"  - {other.name}: cdp is {reference.rate / other.rate:,.0f}× faster"
                         + (f" (on the {other.note}, {len(other.seconds)} round(s))" if other.note
                            else f" ({len(other.seconds)} round(s))"))
        for name, note in seg.notes:
            lines.append(f"  - {name} and (b): {note}.")
    for name in result.skipped:
        lines.append(f"- **{name} was not installed: its comparison was SKIPPED.**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    result = run(args.profiles, args.rounds, args.seed)
    print(table(result))
    print()
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
