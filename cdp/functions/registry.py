from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from cdp.dsl.types import PqlType

# What a parameter accepts, by type family.
ACCEPTS = {
    "string": lambda t: t.name == "string",
    "integer": lambda t: t.name == "integer",
    "numeric": lambda t: t.is_numeric,
    "temporal": lambda t: t.is_temporal,
    "list": lambda t: t.is_list,
    "scalar": lambda t: not t.is_list and t.name != "duration",
}


@dataclass(frozen=True)
class Param:
    name: str
    accepts: str  # a key of ACCEPTS
    literal_only: bool = False  # the argument must be written as a string literal (date("…"))

    def describe(self) -> str:
        return {"numeric": "a number", "temporal": "a date or datetime", "list": "a list",
                "scalar": "a value", "string": "a string", "integer": "an integer"}[self.accepts]


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
    sql: Mapping[str, Callable[..., Any]] = field(default_factory=dict)  # dialect → SQL form

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


_REGISTRY: dict[str, Function] = {}


def register(function: Function) -> Function:
    if function.name in _REGISTRY:
        raise ValueError(f"function {function.name!r} is registered twice")
    _REGISTRY[function.name] = function
    return function


def _load_builtins() -> None:
    if not _REGISTRY:
        from cdp.functions import general, numeric, temporal, text  # noqa: F401  (registers)


def lookup(name: str) -> Function | None:
    _load_builtins()
    return _REGISTRY.get(name.lower())


def all_functions() -> list[Function]:
    _load_builtins()
    return sorted(_REGISTRY.values(), key=lambda f: f.name)


def same_as_first(types: Sequence[PqlType]) -> PqlType:
    return types[0]


def fixed(t: PqlType) -> Callable[[Sequence[PqlType]], PqlType]:
    return lambda _types: t
