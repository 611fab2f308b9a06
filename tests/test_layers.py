"""The layers point one way, and no two packages import each other (README, Architecture).

Every import in cdp/ — at the top of a module or inside a function, it makes no difference —
is read with ``ast``. A module may import from its own layer and the layers below; top-level
packages must not form a cycle, within a layer either. A lazy import no longer hides a cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import cdp

ROOT = Path(cdp.__file__).parent

# Bottom to top. A name is a top-level package or module of cdp.
LAYERS: list[tuple[str, set[str]]] = [
    ("cross-cutting", {"__init__", "errors", "settings", "observability"}),
    ("language: types", {"pqltypes"}),
    ("language: functions and schemas", {"functions", "schema"}),
    ("language: front end", {"dsl"}),
    ("storage", {"storage"}),
    ("engines", {"engine"}),
    ("domain services", {"text", "jobs", "governance", "sandboxes", "auth", "identity", "schema_registry",
                         "datasets", "expressions", "profiles", "segments", "ingestion", "sources", "activation", "demo",
                         "devtools"}),
    ("HTTP", {"web", "api"}),
    ("entry points", {"cli"}),
]
LEVEL = {name: level for level, (_title, names) in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, str, str]]:
    """(importing top-level name, imported top-level name, where) for every cdp import."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent)
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        source = _top(module) if module != "cdp" else "__init__"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + ([f"cdp.{alias.name}" for alias in node.names] if node.module == "cdp" else [])
            else:
                continue
            for name in names:
                if name == "cdp" or name.startswith("cdp."):
                    target = _top(name)
                    if name != "cdp" and target != source:
                        found.append((source, target, f"{relative}:{node.lineno}"))
    return found


def test_every_package_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert names - set(LEVEL) == set(), "give the new package a layer in LAYERS (tests/test_layers.py)"


def test_imports_point_down():
    upward = [f"{where}: {source} ({LAYERS[LEVEL[source]][0]}) imports {target} ({LAYERS[LEVEL[target]][0]})"
              for source, target, where in _imports() if LEVEL[target] > LEVEL[source]]
    assert upward == [], "imports against the layers:\n" + "\n".join(upward)


def test_no_package_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target, _where in _imports():
        graph[source].add(target)
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} → {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == [], "package cycles:\n" + "\n".join(cycles)


def test_the_check_sees_a_violation():
    """The test reads real imports: the HTTP layer does import the domain packages."""
    assert ("api", "profiles") in {(s, t) for s, t, _w in _imports()}
