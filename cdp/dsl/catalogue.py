"""Segment catalogues: `in segment` references, unknown keys and cycles (DSL.md §8)."""

from __future__ import annotations

from typing import Mapping

from cdp.dsl import ast
from cdp.dsl.errors import Diagnostic, PqlError


def reference_graph(definitions: Mapping[str, ast.Node]) -> dict[str, set[str]]:
    return {key: ast.segment_references(tree) for key, tree in definitions.items()}


def find_cycle(graph: Mapping[str, set[str]], start: str) -> list[str] | None:
    """A path start → … → start through the graph, or None. Iterative, so long chains are safe."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        key, path = stack.pop()
        for ref in sorted(graph.get(key, ())):
            if ref == start:
                return path + [start]
            if ref not in seen and ref in graph:
                seen.add(ref)
                stack.append((ref, path + [ref]))
    return None


def dependency_order(graph: Mapping[str, set[str]]) -> list[str]:
    """Keys ordered so that every segment comes after the segments it refers to."""
    order: list[str] = []
    state: dict[str, int] = {}
    for root in sorted(graph):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph.get(root, ()))))]
        state[root] = 1
        while stack:
            key, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[key] = 2
                order.append(key)
            elif child in graph and not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return order


def cycle_errors(text: str, tree: ast.Node, graph: Mapping[str, set[str]], own_key: str | None) -> list[Diagnostic]:
    """segment_cycle diagnostics for the references of one expression."""
    errors = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.SegmentRef):
            continue
        if own_key is not None:
            path = [own_key, node.key] if node.key == own_key else None
            if path is None:
                sub = dict(graph)
                sub[own_key] = ast.segment_references(tree)
                found = find_cycle(sub, node.key)
                path = found if found and own_key in found else None
                if path is None:
                    found = find_cycle(sub, own_key)
                    path = found if found and node.key in found else None
        else:
            path = find_cycle(graph, node.key)
        if path:
            errors.append(Diagnostic(
                "segment_cycle",
                "segments refer to each other in a cycle: " + " → ".join(f'"{k}"' for k in path),
                node.span,
                hint="a segment may not depend on itself, directly or through others",
                source=text,
            ))
    return errors


def prefix_errors(key: str, error: PqlError) -> list[Diagnostic]:
    return [
        Diagnostic(d.code, f'in segment "{key}": {d.message}', d.span, hint=d.hint, source=d.source)
        for d in error.errors
    ]

