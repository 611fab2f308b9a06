"""Compiling checked trees to predicates (cached by canonical text), and explaining one
profile's evaluation node by node."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from cdp.dsl import ast, check, render
from cdp.dsl.errors import Diagnostic, PqlError
from cdp.dsl.render import render_string
from cdp.engine.memory.codegen import Codegen
from cdp.engine.memory.common import as_instant
from cdp.engine.profile import LoadedProfile
from cdp.engine.support import require_support
from cdp.schema import Schema, luma_schema


Predicate = Callable[..., bool]


@dataclass
class CompiledSegment:
    text: str  # canonical
    source: str  # generated Python, for the curious and for tests
    predicate: Predicate


_CACHE: "OrderedDict[tuple, CompiledSegment]" = OrderedDict()
_CACHE_SIZE = 1024
_CACHE_LOCK = threading.Lock()


def compile_predicate(text_or_tree: str | ast.Node, schema: Schema | None = None, *,
                      segments: Mapping[str, str] | None = None) -> Predicate:
    """Compile once into ``predicate(profile, as_of) -> bool`` (TRUE qualifies).

    ``profile`` is a LoadedProfile (see load_profile); ``as_of`` an aware datetime (a naive one is
    UTC; ISO 8601 text is accepted too: :func:`as_instant`). ``segments``
    is the catalogue that ``in segment`` references resolve against (each referenced segment is
    evaluated at most once per profile and evaluation). Cached by canonical text.
    """
    return compile_segment(text_or_tree, schema, segments=segments).predicate


def compile_segment(text_or_tree: str | ast.Node, schema: Schema | None = None, *,
                    segments: Mapping[str, str] | None = None, trace: bool = False) -> CompiledSegment:
    schema = schema or luma_schema()
    catalogue = dict(segments or {})
    tree = text_or_tree
    if isinstance(tree, ast.Node) and tree.type is not None:
        typed = tree
    else:
        typed = check(tree, schema, segments=catalogue if catalogue else None)
    canonical = render(typed)
    key = (canonical, schema.fingerprint, tuple(sorted(catalogue.items())), trace)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
    require_support(typed, "memory", catalogue)
    referenced = ast.segment_references(typed)
    missing = sorted(k for k in referenced if k not in catalogue)
    if missing:
        raise PqlError([Diagnostic("unknown_segment", f'unknown segment "{k}": no definition was given',
                                   next(n.span for n in ast.walk(typed) if isinstance(n, ast.SegmentRef) and n.key == k),
                                   hint="pass the catalogue of segments (`--segments FILE`)", source=text_or_tree
                                   if isinstance(text_or_tree, str) else "") for k in missing])
    gen = Codegen(trace=trace)
    gen.namespace["_seg"] = _segment_resolver(referenced, schema, catalogue)
    if trace:
        values: list = []
        gen.namespace["_tr"] = lambda index, value: (values.append((index, value)), value)[1]
        gen.namespace["_trace_values"] = values
    source, predicate = gen.module(typed)
    compiled = CompiledSegment(canonical, source, predicate)
    if trace:
        compiled.traced = gen.traced  # type: ignore[attr-defined]
        compiled.trace_values = gen.namespace["_trace_values"]  # type: ignore[attr-defined]
        return compiled
    with _CACHE_LOCK:
        _CACHE[key] = compiled
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


def _segment_resolver(referenced: set[str], schema: Schema, catalogue: Mapping[str, str]):
    if not referenced:
        return None
    compiled: dict[str, Predicate] = {}

    def resolve(key: str, profile: LoadedProfile, as_of: datetime, memo: dict) -> bool:
        found = memo.get(key)
        if found is None:
            predicate = compiled.get(key)
            if predicate is None:
                predicate = compiled[key] = compile_predicate(catalogue[key], schema, segments=catalogue)
            found = memo[key] = bool(predicate(profile, as_of, memo))
        return found

    return resolve


class CompiledCatalogue:
    """A catalogue of segments compiled once for many evaluations (streaming, stored-profile
    evaluate): each definition is checked once (not the whole catalogue again per segment, as
    :func:`compile_predicate` with ``segments`` does) and compiled once, and every reference to
    a segment goes to the one compiled predicate of that segment. The catalogue is a saved one:
    its references were checked for cycles and existence when it was saved; a reference to a key
    it does not hold is an ``unknown_segment`` error of the segment that makes it.

    ``predicate(key)`` raises PqlError (a definition that no longer checks against the schema,
    or that this backend cannot run) for that segment only; the others still compile."""

    def __init__(self, catalogue: Mapping[str, str], schema: Schema):
        self.catalogue = dict(catalogue)
        self.schema = schema
        self._trees: dict[str, ast.Node | PqlError] = {}
        self._predicates: dict[str, Predicate | PqlError] = {}
        self._lock = threading.Lock()

    def tree(self, key: str) -> ast.Node:
        found = self._trees.get(key)
        if found is None:
            try:
                found = check(self.catalogue[key], self.schema)
            except PqlError as error:
                found = error
            self._trees[key] = found
        if isinstance(found, PqlError):
            raise found
        return found

    def predicate(self, key: str) -> Predicate:
        found = self._predicates.get(key)
        if found is None:
            with self._lock:  # one compile per key even when two threads ask at once
                found = self._predicates.get(key)
                if found is None:
                    try:
                        found = self._compile(key)
                    except PqlError as error:
                        found = error
                    self._predicates[key] = found
        if isinstance(found, PqlError):
            raise found
        return found

    def _compile(self, key: str) -> Predicate:
        typed = self.tree(key)
        require_support(typed, "memory")
        referenced = ast.segment_references(typed)
        missing = sorted(k for k in referenced if k not in self.catalogue)
        if missing:
            raise PqlError([Diagnostic("unknown_segment", f'unknown segment "{k}": no definition was given',
                                       next(n.span for n in ast.walk(typed) if isinstance(n, ast.SegmentRef)
                                            and n.key == k), source=self.catalogue[key]) for k in missing])
        gen = Codegen()
        gen.namespace["_seg"] = self._resolve if referenced else None
        return gen.module(typed)[1]

    def _resolve(self, key: str, profile: LoadedProfile, as_of: datetime, memo: dict) -> bool:
        found = memo.get(key)
        if found is None:
            found = memo[key] = bool(self.predicate(key)(profile, as_of, memo))
        return found


def explain(text_or_tree: str | ast.Node, profile: LoadedProfile, as_of: datetime | str, schema: Schema | None = None, *,
            segments: Mapping[str, str] | None = None) -> list[dict]:
    """For one profile, the value of each sub-expression (for people: why is it in or out?).

    Returns [{"depth", "expression", "value"}] in evaluation order, the root first."""
    compiled = compile_segment(text_or_tree, schema, segments=segments, trace=True)
    compiled.trace_values.clear()
    compiled.predicate(profile, as_instant(as_of))
    seen: dict[int, Any] = {}
    for index, value in compiled.trace_values:
        seen.setdefault(index, value)
    rows = []
    for index, (depth, text, is_boolean) in enumerate(compiled.traced):
        if index not in seen:
            shown = "not evaluated"
        else:
            shown = format_value(seen[index], is_boolean)
        rows.append({"depth": depth, "expression": text, "value": shown})
    return rows


def format_value(value: Any, is_boolean: bool) -> str:
    if is_boolean:
        return {True: "TRUE", False: "FALSE", None: "UNKNOWN"}[value]
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return render_string_value(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v, False) for v in value) + "]"
    return str(value)


def render_string_value(value: str) -> str:
    return render_string(value)
