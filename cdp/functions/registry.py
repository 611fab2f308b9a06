"""The function registry: one record per function, and the only place a function lives.

A record holds the function's name, signature, null behaviour, documentation and example, its
Python form (what the in-memory engine runs) and its SQL forms keyed by dialect ("default" for
any). Everything else is derived from the records: the grammar's function names and the
renderer's keywords (cdp.dsl.parser), the SQLite functions that run a Python form
(cdp.storage.sqlite_functions), the function table and the support matrix of docs/language.md,
and the check that a backend can run an expression (cdp.engine.support).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from cdp.pqltypes import DATE, DATETIME, PqlType

# What a parameter accepts, by type family.
ACCEPTS = {
    "string": lambda t: t.name == "string",
    "integer": lambda t: t.name == "integer",
    "numeric": lambda t: t.is_numeric,
    "temporal": lambda t: t.is_temporal,
    "list": lambda t: t.is_list,
    "scalar": lambda t: not t.is_list and t.name != "duration",
}

# When the in-memory engine computes a call (DSL.md §6: bounds that depend only on as_of are
# resolved once, before evaluation).
STAGES = (
    "row",  # per profile (the default)
    "as_of",  # depends on as_of alone (now(), today()): computed once per as_of
    "compile",  # its arguments are literals (date("…")): computed once, when compiled
)

SQL_DIALECTS = ("sqlite", "postgresql", "duckdb", "spark")
BACKENDS = ("memory",) + SQL_DIALECTS


@dataclass(frozen=True)
class Param:
    name: str
    accepts: str  # a key of ACCEPTS
    literal_only: bool = False  # the argument must be written as a string literal (date("…"))

    def describe(self) -> str:
        return {"numeric": "a number", "temporal": "a date or datetime", "list": "a list",
                "scalar": "a value", "string": "a string", "integer": "an integer"}[self.accepts]


def python_udf(compiler, node, args):
    """The SQL form "run the record's own Python form inside the database": SQLite registers it
    on every connection as ``pql_<name>`` (cdp.storage.sqlite_functions); as_of comes first for a
    clocked function. Only SQLite can run Python, so use it under the "sqlite" key."""
    import sqlalchemy as sa

    function = lookup(node.function)
    clock = [compiler.as_of_param] if function.needs_clock else []
    # a `number` argument is a double, also when the data wrote a whole number there
    args = [sa.cast(a, sa.Float(53)) if arg.type is not None and arg.type.name == "number" else a
            for a, arg in zip(args, node.args)]
    return getattr(sa.func, udf_name(function.name))(*clock, *args)


def udf_name(function_name: str) -> str:
    return f"pql_{function_name}"


@dataclass(frozen=True)
class Function:
    """One built-in function: everything about it in one place."""

    name: str
    params: tuple[Param, ...]
    result: Callable[[Sequence[PqlType]], PqlType]
    python: Callable[..., Any]
    doc: str
    example: str
    min_args: int | None = None  # defaults to len(params)
    variadic: bool = False  # the last parameter repeats
    null_propagating: bool = True  # any null argument gives null without calling `python`
    never_null: bool = False  # the result is never null (now(), date("…"))
    needs_clock: bool = False  # `python` receives as_of (an aware UTC datetime) first
    validate_literal: Callable[[str], str | None] | None = None  # error message for a bad literal
    stage: str = "row"  # one of STAGES
    # The arguments share one type (coalesce): the checker unifies them, and the compilers widen
    # a date argument to a datetime (midnight UTC) when the result is a datetime.
    common_type: bool = False
    # dialect ("sqlite", "postgresql", or "default" for any) → form(compiler, node, args) giving
    # a SQLAlchemy expression; `python_udf` runs `python` inside SQLite. A backend without a
    # form cannot run the function: expressions using it fail when checked for that backend.
    sql: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"function {self.name!r}: stage must be one of {STAGES}")
        unknown = set(self.sql) - {"default", *SQL_DIALECTS}
        if unknown:
            raise ValueError(f"function {self.name!r}: SQL forms for unknown dialects {sorted(unknown)}")
        if self.sql.get("postgresql") is python_udf or (self.sql.get("default") is python_udf):
            raise ValueError(f"function {self.name!r}: python_udf runs on SQLite only; key it \"sqlite\"")

    @property
    def arity(self) -> tuple[int, int | None]:
        low = len(self.params) if self.min_args is None else self.min_args
        return low, None if self.variadic else len(self.params)

    def param_for(self, index: int) -> Param:
        if index < len(self.params):
            return self.params[index]
        return self.params[-1]

    def signature(self) -> str:
        names = [p.name for p in self.params]
        low = self.arity[0]
        shown = []
        for i, n in enumerate(names):
            shown.append(f"[{n}]" if i >= low else n)
        if self.variadic:
            shown.append("…")
        return f"{self.name}({', '.join(shown)})"

    def sql_form(self, dialect: str) -> Callable[..., Any] | None:
        return self.sql.get(dialect) or self.sql.get("default")

    def supports(self, backend: str) -> bool:
        if backend == "memory":
            return self.python is not None
        return self.sql_form(backend) is not None

    def argument_targets(self, node) -> tuple[PqlType | None, ...]:
        """The type each argument of a checked call is widened to before the call (None: as it
        is). The one widening the language has is a date taken as a datetime (DSL.md §2)."""
        if not self.common_type or node.type != DATETIME:
            return (None,) * len(node.args)
        return tuple(DATETIME if arg.type == DATE else None for arg in node.args)


_REGISTRY: dict[str, Function] = {}
_GENERATION = [0]  # bumped on every change: the grammar and keyword list are rebuilt from it


def register(function: Function) -> Function:
    _load_builtins()
    name = function.name.lower()
    if name != function.name or not name.isidentifier() or not name.isascii():
        raise ValueError(f"a function name is a lower-case identifier, not {function.name!r}")
    if name in _REGISTRY:
        raise ValueError(f"function {function.name!r} is registered twice")
    _REGISTRY[name] = function
    _GENERATION[0] += 1
    return function


def unregister(name: str) -> None:
    """Remove a function (for extensions and tests that register one of their own)."""
    _load_builtins()
    del _REGISTRY[name]
    _GENERATION[0] += 1


@contextmanager
def registered(function: Function) -> Iterator[Function]:
    """A function registered for the duration of a with block."""
    register(function)
    try:
        yield function
    finally:
        unregister(function.name)


def generation() -> int:
    _load_builtins()
    return _GENERATION[0]


_LOADING = [False]


def _load_builtins() -> None:
    if not _REGISTRY and not _LOADING[0]:
        _LOADING[0] = True
        try:
            from cdp.functions import general, numeric, temporal, text  # noqa: F401  (registers)
        finally:
            _LOADING[0] = False


def lookup(name: str) -> Function | None:
    _load_builtins()
    return _REGISTRY.get(name.lower())


def all_functions() -> list[Function]:
    _load_builtins()
    return sorted(_REGISTRY.values(), key=lambda f: f.name)


_NAMES: dict[int, tuple[str, ...]] = {}


def names() -> tuple[str, ...]:
    """The registered names, sorted (asked on every render and parse: kept per generation)."""
    current = generation()
    found = _NAMES.get(current)
    if found is None:
        _NAMES.clear()
        found = _NAMES[current] = tuple(f.name for f in all_functions())
    return found


def same_as_first(types: Sequence[PqlType]) -> PqlType:
    return types[0]


def fixed(t: PqlType) -> Callable[[Sequence[PqlType]], PqlType]:
    return lambda _types: t
