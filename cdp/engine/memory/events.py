"""Code generation for event terms: `exists`, `no event`, aggregates, sequences and segment
references. Each event term becomes a helper function over the profile's time-ordered events."""

from __future__ import annotations

from datetime import datetime, timezone

from cdp.dsl import ast, render
from cdp.pqltypes import NUMBER
from cdp.dsl import runtime
from cdp.engine.memory.common import Ctx


class EventNodes:
    """Mixed into the code generator (cdp.engine.memory.codegen): ``v_``/``f_`` methods."""

    # ---- segments ---------------------------------------------------------------------------

    def v_SegmentRef(self, node: ast.SegmentRef, ctx):
        self.uses_segments = True
        return f"_seg({node.key!r}, p, C[0], memo)"

    # ---- event terms ------------------------------------------------------------------------

    def _source(self, flt: ast.EventFilter) -> tuple[str, ast.Node | None]:
        """Where to look for candidates, and the condition left to test.

        A top-level conjunct `type = "X"` picks the profile's events of type X (already in
        time order), and needs no test afterwards."""
        condition = flt.condition
        conjuncts = list(condition.operands) if isinstance(condition, ast.BoolChain) and condition.op == "and" else [condition]
        for i, c in enumerate(conjuncts):
            if (isinstance(c, ast.Comparison) and c.op == "=" and isinstance(c.left, ast.Name)
                    and c.left.binding == "event" and c.left.path == ("type",)
                    and isinstance(c.right, ast.StringLiteral)):
                rest = conjuncts[:i] + conjuncts[i + 1:]
                if not rest:
                    remaining = None
                elif len(rest) == 1:
                    remaining = rest[0]
                else:
                    remaining = condition.annotated(operands=tuple(rest))
                return f"p.by_type.get({c.right.value!r}, _EMPTY)", remaining
        return "(p.events, p.timestamps)", condition

    def _window_indexes(self, window: ast.Node | None) -> list[str]:
        """Lines setting i, j: the slice of `ts` (time-ordered timestamps) inside a first-step
        window. Bounds that depend only on as_of are computed once per as_of (in C)."""
        if window is None:
            return ["i = 0", "j = _br(ts, C[0])"]
        if isinstance(window, ast.WithinLast):  # (as_of − N, as_of]
            lo = self.as_of_constant(self._window_start(window.amount, window.unit))
            return [f"i = _br(ts, {lo})", "j = _br(ts, C[0])"]
        if isinstance(window, ast.WithinPeriod):  # [start of period, as_of]
            period = "day" if window.period == "today" else window.period
            lo = self.as_of_constant(f"_rt.period_start(as_of, {period!r})")
            return [f"i = _bl(ts, {lo})", "j = _br(ts, C[0])"]
        bounds = [window.start, window.end] if isinstance(window, ast.FromTo) else [window.bound]
        profile_dependent = any(
            isinstance(n, (ast.Name, ast.Aggregate, ast.SegmentRef, ast.Exists, ast.NoEvent))
            for b in bounds for n in ast.walk(b)
        )
        function = {ast.Since: "range_since", ast.Before: "range_before", ast.FromTo: "range_from_to"}[type(window)]
        codes = [self.value(b, Ctx(in_condition=True)) for b in bounds]
        if profile_dependent:
            return [f"i, j = _rt.{function}(C[0], {', '.join(codes)}).indexes(ts)"]
        rng = self.as_of_constant(f"_rt.{function}(as_of, {', '.join(c.replace('C[', '_C_[') for c in codes)})")
        return [f"i, j = {rng}.indexes(ts)"]

    def _window_start(self, amount: int, unit: str) -> str:
        """The expression of `within last N UNIT`'s lower bound: for a fixed unit (seconds to
        weeks) as_of minus a timedelta made once (one subtraction per as_of, not a duration
        built each time; ~0.09 against ~0.86 µs, measured); months and years (calendar units),
        or a length no timedelta holds (the language caps durations at 1,000,000 units, which
        one does), through runtime.window_start."""
        if unit not in ("month", "year"):
            name = self.window_deltas.get((amount, unit))
            if name is None:
                try:
                    name = self.const(runtime.timedelta_of(amount, unit), "window")
                except OverflowError:
                    name = ""
                self.window_deltas[(amount, unit)] = name
            if name:
                return f"_rt.window_start_by(as_of, {name})"
        return f"_rt.window_start(as_of, {amount}, {unit!r})"

    def _condition_code(self, condition: ast.Node | None, ctx: Ctx) -> str | None:
        if condition is None:
            return None
        return self.truth(condition, ctx)

    def _event_function(self, body: list[str], node: ast.Node | None = None) -> str:
        """A helper over the profile's events; with ``node``, its value is shared through the
        evaluation's ``memo`` (keyed by the term's canonical text) by every predicate evaluated on
        the same profile and instant — segments of a catalogue often repeat a term (the same
        ``last(...)``, ``sum(...)``, ``exists ...``): computed once per profile, not per segment.
        Sound because an event term reads only the profile, the instant and the catalogue
        (``(p, A, C, memo)``: no enclosing event or alias), and a memo is never shared between
        profiles or instants (the contract ``in segment`` already relies on)."""
        name = f"_ev{next(self.counter)}"
        self.functions.append(f"def {name}(p, A, C, memo):\n" + "\n".join("    " + line for line in body))
        if node is None or self.trace:
            return f"{name}(p, A, C, memo)"
        key = self.const(("event term", render(node)), "term")
        return f"_shared({key}, {name}, p, A, C, memo)"

    def _hoist(self, conditions: list[ast.Node | None], ctx: Ctx) -> list[str]:
        """Read each profile attribute an event condition uses once, before the loop over events."""
        lines = []
        for condition in conditions:
            if condition is None:
                continue
            for n in ast.walk(condition):
                if isinstance(n, ast.Name) and n.binding == "profile" and n.dotted not in ctx.hoisted:
                    var = f"_pa{next(self.counter)}"
                    ctx.hoisted[n.dotted] = var
                    lines.append(f"{var} = A.get({n.dotted!r})")
        return lines

    def _filter_prelude(self, flt: ast.EventFilter, empty_result: str) -> tuple[list[str], str | None, Ctx]:
        """Lines that find the candidate events (evs[i:j]) and return early when there are none;
        the condition left to test on each; the context it was compiled in."""
        source, condition = self._source(flt)
        ctx = Ctx(event="e", aliases={flt.alias: "e"} if flt.alias else {}, in_condition=True)
        lines = [f"evs, ts = {source}"] + self._window_indexes(flt.window)
        lines += ["if i >= j:", f"    return {empty_result}"]
        lines += self._hoist([condition], ctx)
        return lines, self._condition_code(condition, ctx), ctx

    def v_Exists(self, node: ast.Exists, ctx):
        if node.steps:
            return self._sequence(node)
        lines, cond, _ = self._filter_prelude(node.filter, "False")
        if cond is None:
            lines.append("return True")
        else:
            lines += ["for e in evs[i:j]:", f"    if {cond}:", "        return True", "return False"]
        return self._event_function(lines, node)

    def v_NoEvent(self, node: ast.NoEvent, ctx):
        lines, cond, _ = self._filter_prelude(node.filter, "True")
        if cond is None:
            lines.append("return False")
        else:
            lines += ["for e in evs[i:j]:", f"    if {cond}:", "        return False", "return True"]
        return self._event_function(lines, node)

    def f_Exists(self, node, ctx):
        return f"(not {self.value(node, ctx)})"

    def f_NoEvent(self, node, ctx):
        return f"(not {self.value(node, ctx)})"

    def v_Aggregate(self, node: ast.Aggregate, ctx):
        fn = node.function
        empty = {"count": "0", "count_distinct": "0", "sum": "0"}.get(fn, "None")
        lines, cond, _ = self._filter_prelude(node.filter, empty)
        if fn == "count":
            if cond is None:
                lines.append("return j - i")
            else:
                lines += ["n = 0", "for e in evs[i:j]:", f"    if {cond}:", "        n += 1", "return n"]
            return self._event_function(lines, node)
        key = ".".join(node.path)
        read = f"e[{key!r}]" if key in ("id", "type", "timestamp") else f"e.get({key!r})"
        test = f"(v := {read}) is not None" + (f" and {cond}" if cond else "")
        if fn in ("first", "last"):
            order = "evs[i:j]" if fn == "first" else "reversed(evs[i:j])"
            lines += [f"for e in {order}:", f"    if {test}:", "        return v", "return None"]
        elif fn in ("sum", "avg"):
            # a `number` field sums in doubles (as SQL does), an integer field exactly
            add = "s += float(v)" if fn == "sum" and node.type == NUMBER else "s += v"
            lines += ["s = 0", "n = 0", "for e in evs[i:j]:", f"    if {test}:", f"        {add}", "        n += 1"]
            # an exact sum, then DSL.md §9: outside 64 bits (or not finite) is null
            lines.append("return _chk(s)" if fn == "sum" else "return _chk(s / n) if n else None")
        elif fn == "count_distinct":
            # distinct doubles in a `number` field (9007199254740993 and 9007199254740992.0 are one), as SQL counts
            add = "seen.add(_flt(v))" if node.field_type == NUMBER else "seen.add(v)"
            lines += ["seen = set()", "for e in evs[i:j]:", f"    if {test}:", f"        {add}", "return len(seen)"]
        elif fn in ("min", "max"):
            better = "<" if fn == "min" else ">"
            lines += ["best = None", "for e in evs[i:j]:", f"    if {test} and (best is None or v {better} best):",
                      "        best = v", "return best"]
        else:
            raise ValueError(f"unknown aggregate {fn}")
        return self._event_function(lines, node)

    def _sequence(self, node: ast.Exists) -> str:
        filters = [node.filter] + [s.filter for s in node.steps]
        alias_index = {f.alias: i for i, f in enumerate(filters) if f.alias}
        lines, cond, ctx0 = self._filter_prelude(node.filter, "False")
        # aliases each step reads, as indexes into the chain of chosen events
        reads = []
        for k, f in enumerate(filters):
            used = {alias_index[n.path[0]] for n in ast.walk(f.condition) if isinstance(n, ast.Name)
                    and n.binding == "alias" and n.path[0] != f.alias} if f.condition is not None else set()
            reads.append(used)
        hoisted = ctx0.hoisted
        prepared = []
        for k, step in enumerate(node.steps, start=1):
            flt = step.filter
            source, condition = self._source(flt)
            aliases = {a: f"chain[{i}]" for a, i in alias_index.items() if i < k}
            if flt.alias:
                aliases[flt.alias] = "e"
            ctx = Ctx(event="e", aliases=aliases, in_condition=True, hoisted=hoisted)
            lines += self._hoist([condition], ctx)
            prepared.append((k, step, source, condition, ctx))
        if len(node.steps) == 1 and not reads[1]:
            return self._two_step_sequence(lines, cond, prepared[0], node)
        if cond:
            lines += ["first = []", "for e in evs[i:j]:", f"    if {cond}:", "        first.append(e)"]
        else:
            lines.append("first = evs[i:j]")
        lines.append("if not first:")
        lines.append("    return False")
        step_codes = []
        for k, step, source, condition, ctx in prepared:
            flt = step.filter
            gap = "None"
            if isinstance(flt.window, ast.WithinGap):
                gap = self.const(runtime.gap_function(flt.window.amount, flt.window.unit), "gap")
            needed = tuple(sorted({i for later in reads[k:] for i in later if i < k}))
            lines.append(f"evs{k}, ts{k} = {source}")
            if condition is not None and reads[k]:
                fname = f"_c{next(self.counter)}"
                lines.append(f"def {fname}(e, chain):")
                lines.append(f"    return {self.truth(condition, ctx)}")
                step_codes.append(f"_Step(evs{k}, ts{k}, {fname}, {gap}, {step.negated}, {needed!r})")
            else:
                if condition is not None:
                    lines.append(f"evs{k} = [e for e in evs{k} if {self.truth(condition, ctx)}]")
                    lines.append(f"ts{k} = [e['timestamp'] for e in evs{k}]")
                step_codes.append(f"_Step(evs{k}, ts{k}, None, {gap}, {step.negated}, {needed!r})")
        lines.append(f"return _seq(first, ({', '.join(step_codes)},), C[0])")
        return self._event_function(lines, node)

    def _two_step_sequence(self, lines: list[str], cond: str | None, prepared, node: ast.Exists) -> str:
        """`exists A then [no] B [within gap]` where B reads no alias: for each A in time order,
        one binary search among the B timestamps decides (O(m log n), no search machinery)."""
        _k, step, source, condition, ctx = prepared
        lines.append(f"evs1, ts1 = {source}")
        if condition is not None:
            lines.append(f"ts1 = [e['timestamp'] for e in evs1 if {self.truth(condition, ctx)}]")
        lines.append("n1 = len(ts1)")
        lines.append("as_of = C[0]")
        window = step.filter.window
        if isinstance(window, ast.WithinGap):
            if window.unit in ("month", "year"):
                gap = self.const(runtime.gap_function(window.amount, window.unit), "gap")
                limit = [f"hi = {gap}(t)", "if hi is None or hi > as_of:", "    hi = as_of"]
            else:
                delta_value = runtime.timedelta_of(window.amount, window.unit)
                delta = self.const(delta_value, "delta")
                latest = self.const(datetime.max.replace(tzinfo=timezone.utc) - delta_value, "latest")
                limit = [f"hi = t + {delta} if t <= {latest} else as_of", "if hi > as_of:", "    hi = as_of"]
        else:
            limit = ["hi = as_of"]
        found_next = "k < n1 and ts1[k] <= hi"
        success = f"not ({found_next})" if step.negated else found_next
        lines.append("for e in evs[i:j]:")
        indent = "    "
        if cond:
            lines.append(f"    if not ({cond}):")
            lines.append("        continue")
        lines.append(f"{indent}t = e['timestamp']")
        lines += [indent + line for line in limit]
        lines.append(f"{indent}k = _br(ts1, t)")
        lines.append(f"{indent}if {success}:")
        lines.append(f"{indent}    return True")
        lines.append("return False")
        return self._event_function(lines, node)
