"""The deny condition of a policy: labels with AND, OR and parentheses (``C4 OR (I1 AND S1)``).

Text goes through its own Lark grammar (cdp/governance/policy.lark, LALR, strict) and is turned at
once into the typed tree below — frozen dataclasses with source spans — which is what the rest
of cdp reads; the text is never matched as a string.

    tree = parse("C4 OR (I1 AND S1)", known=labels)   # PolicyError with every problem
    render(tree)                                       # "C4 OR (I1 AND S1)" (canonical)
    from_json(to_json(tree)) == tree
    holds(tree, {"I1", "S1"})                          # True
    because(tree, {"C4", "I1", "S1", "C2"})            # {"C4", "I1", "S1"}: what made it true

Canonical text: keywords in upper case, one space around them, parentheses only where the tree
needs them — a chain inside a chain of the same operator (written nested, kept nested) and, for
the reader, an AND inside an OR. ``parse(render(t)) == t``; spans take no part in equality.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Union

import lark
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from cdp.dsl.errors import NO_SPAN, Span, caret_snippet

MAX_CHARS = 10_000
MAX_DEPTH = 32  # nested parentheses
MAX_LABELS = 1_000  # label occurrences in one condition

ERROR_CODES = ("syntax_error", "unknown_label", "too_complex")

GRAMMAR = "policy.lark"  # package data of cdp.governance: in the source tree and inside the wheel


# ---- the tree -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    span: Span = field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Label(Node):
    name: str


@dataclass(frozen=True, slots=True)
class AllOf(Node):
    """``a AND b AND …`` (two operands or more): true when every operand is."""

    operands: tuple["Condition", ...]


@dataclass(frozen=True, slots=True)
class AnyOf(Node):
    """``a OR b OR …`` (two operands or more): true when one operand is."""

    operands: tuple["Condition", ...]


Condition = Union[Label, AllOf, AnyOf]


def walk(node: Condition) -> Iterable[Condition]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if not isinstance(current, Label):
            stack.extend(reversed(current.operands))


def labels_of(node: Condition) -> set[str]:
    return {n.name for n in walk(node) if isinstance(n, Label)}


# ---- errors -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyDiagnostic:
    code: str
    message: str
    span: Span
    hint: str | None = None
    source: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"unknown error code {self.code!r}")

    def caret(self) -> str:
        """The source line of the span's start and a caret under the span on that line."""
        return caret_snippet(self.source, self.span)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "line": self.span.line, "column": self.span.column,
                "end_line": self.span.end_line, "end_column": self.span.end_column, "hint": self.hint,
                "caret": self.caret()}

    def __str__(self) -> str:
        parts = [f"{self.code} at line {self.span.line}, column {self.span.column}: {self.message}"]
        if self.caret():
            parts.append(self.caret())
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class PolicyError(Exception):
    """Raised by parse and from_json with every problem found (never an empty list)."""

    def __init__(self, errors: list[PolicyDiagnostic]):
        if not errors:
            raise ValueError("PolicyError needs at least one diagnostic")
        self.errors = list(errors)
        super().__init__("\n\n".join(map(str, self.errors)))


# ---- parsing ------------------------------------------------------------------------------------


@cache
def _lark() -> lark.Lark:
    """Built once, on first use. The basic lexer: `or` is a keyword wherever it stands."""
    text = resources.files("cdp.governance").joinpath(GRAMMAR).read_text(encoding="utf-8")
    return lark.Lark(text, parser="lalr", lexer="basic", strict=True, maybe_placeholders=False, cache=False)


def parse(text: str, *, known: Collection[str] | None = None) -> Condition:
    """The tree of a deny condition. With ``known`` (the label names in force), every label must be
    one of them (``unknown_label`` at its span, with the closest names). PolicyError otherwise."""
    if not isinstance(text, str):
        raise TypeError("parse() takes the condition text as a str")
    if len(text) > MAX_CHARS:
        raise PolicyError([PolicyDiagnostic("too_complex", f"the condition is {len(text)} characters long; the "
                                            f"limit is {MAX_CHARS}", Span.at_offset(text, 0, 1), source=text)])
    if not text.strip():
        raise PolicyError([PolicyDiagnostic("syntax_error", "the condition is empty",
                                            Span.at_offset(text, 0, len(text)),
                                            hint="name the labels it denies, e.g. `C4 OR (I1 AND S1)`", source=text)])
    depth = _paren_depth(text)
    if depth is not None:
        raise PolicyError([PolicyDiagnostic("too_complex", f"parentheses nest deeper than {MAX_DEPTH} levels",
                                            Span.at_offset(text, depth, depth + 1), hint="flatten the condition",
                                            source=text)])
    try:
        lark_tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise PolicyError([_syntax_error(text, exc)]) from None
    tree = _build(text, lark_tree)
    count = sum(1 for n in walk(tree) if isinstance(n, Label))
    if count > MAX_LABELS:
        raise PolicyError([PolicyDiagnostic("too_complex", f"the condition names {count} labels; the limit is "
                                            f"{MAX_LABELS}", tree.span, source=text)])
    if known is not None:
        unknown = [n for n in walk(tree) if isinstance(n, Label) and n.name not in known]
        if unknown:
            raise PolicyError(sorted((_unknown_label(text, n, known) for n in unknown),
                                     key=lambda d: d.span.start))
    return tree


def _paren_depth(text: str) -> int | None:
    """The offset of the first `(` deeper than MAX_DEPTH, or None."""
    depth = 0
    for offset, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth > MAX_DEPTH:
                return offset
        elif char == ")":
            depth = max(depth - 1, 0)
    return None


def _unknown_label(text: str, node: Label, known: Collection[str]) -> PolicyDiagnostic:
    by_case = [k for k in known if k.lower() == node.name.lower()]
    close = by_case or difflib.get_close_matches(node.name, sorted(known), n=3, cutoff=0.5)
    same_family = [c for c in close if c[0].upper() == node.name[0].upper()]  # S9: S1, S2 before C9
    close = sorted(same_family, key=lambda c: (len(c), c)) if same_family and not by_case else close
    hint = ("did you mean " + ", ".join(f"`{c}`" for c in close) + "?") if close else \
        "the standard labels are C1–C12, I1–I2 and S1–S2; create a custom label with POST /v1/labels"
    return PolicyDiagnostic("unknown_label", f"unknown label `{node.name}`", node.span, hint=hint, source=text)


_EXPECTED = {"LABEL": "a label", "_LPAR": "`(`", "_RPAR": "`)`", "_AND": "`AND`", "_OR": "`OR`",
             "$END": "the end of the condition"}
_HINTS = {"&": "write `AND`", "|": "write `OR`", "!": "a policy denies when labels are present; there is no NOT",
          ",": "combine labels with `AND` or `OR`", '"': "labels are written bare, without quotes: `C4`",
          "'": "labels are written bare, without quotes: `C4`"}


def _expected(names: Iterable[str]) -> str:
    described = sorted({_EXPECTED.get(n, f"`{n}`") for n in names})
    return "; expected " + ", ".join(described) if described else ""


def _syntax_error(text: str, exc: UnexpectedInput) -> PolicyDiagnostic:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream]
        return PolicyDiagnostic("syntax_error", f"unexpected character `{char}`",
                                Span.at_offset(text, exc.pos_in_stream, exc.pos_in_stream + 1),
                                hint=_HINTS.get(char, "a label is a letter followed by letters, digits, `_` or `-`"),
                                source=text)
    assert isinstance(exc, UnexpectedToken)
    token: Token = exc.token
    expected = set(exc.expected or ())
    if token.type == "$END":
        hint = "close the parenthesis with `)`" if "_RPAR" in expected else None
        return PolicyDiagnostic("syntax_error", "the condition ends too early" + _expected(expected),
                                Span.at_offset(text, len(text)), hint=hint, source=text)
    span = Span.at_offset(text, token.start_pos, token.end_pos)
    message = f"unexpected `{token.value}`" + _expected(expected)
    hint = None
    before = text[:token.start_pos].rstrip().split()
    if token.type == "LABEL" and before and before[-1].upper() == "NOT":
        hint = "a policy denies when labels are present; there is no NOT"
    elif token.type == "LABEL":
        hint = "combine labels with `AND` or `OR`"
    elif token.type in ("_AND", "_OR") and "LABEL" in expected:
        hint = f"`{token.value}` is a keyword; a label cannot be named AND or OR"
    return PolicyDiagnostic("syntax_error", message, span, hint=hint, source=text)


def _span(text: str, node: Tree | Token) -> Span:
    first = last = node
    while isinstance(first, Tree):
        first = first.children[0]
    while isinstance(last, Tree):
        last = last.children[-1]
    return Span.at_offset(text, first.start_pos, last.end_pos)


def _build(text: str, node: Tree | Token) -> Condition:
    """Lark's tree → ours (depth is bounded by MAX_DEPTH, so recursion is safe)."""
    if node.data == "label":
        token = node.children[0]
        return Label(str(token), span=Span.at_offset(text, token.start_pos, token.end_pos))
    operands = tuple(_build(text, child) for child in node.children)
    kind = AllOf if node.data == "all_of" else AnyOf
    return kind(operands, span=Span.covering(operands[0].span, operands[-1].span))


# ---- canonical text and JSON --------------------------------------------------------------------


def render(node: Condition) -> str:
    if isinstance(node, Label):
        return node.name
    keyword = " AND " if isinstance(node, AllOf) else " OR "
    return keyword.join(f"({render(o)})" if _needs_parens(node, o) else render(o) for o in node.operands)


def _needs_parens(parent: Condition, child: Condition) -> bool:
    return not isinstance(child, Label) and (type(child) is type(parent) or isinstance(parent, AnyOf)
                                             or isinstance(child, AnyOf))


def to_json(node: Condition) -> dict[str, Any]:
    """``{"label": "C4"}``, ``{"and": [...]}``, ``{"or": [...]}``."""
    if isinstance(node, Label):
        return {"label": node.name}
    return {"and" if isinstance(node, AllOf) else "or": [to_json(o) for o in node.operands]}


def from_json(data: Any, *, known: Collection[str] | None = None) -> Condition:
    """The tree of a JSON form; PolicyError (``syntax_error`` naming the JSON path) when malformed."""
    def fail(path: str, message: str) -> PolicyError:
        return PolicyError([PolicyDiagnostic("syntax_error", f"{path}: {message}", NO_SPAN)])

    def build(value: Any, path: str, depth: int) -> Condition:
        if depth > MAX_DEPTH + 1:
            raise PolicyError([PolicyDiagnostic("too_complex", f"{path}: nests deeper than {MAX_DEPTH} levels",
                                                NO_SPAN)])
        if not isinstance(value, dict) or len(value) != 1:
            raise fail(path, 'expected an object with one key: "label", "and" or "or"')
        (kind, inner), = value.items()
        if kind == "label":
            if not isinstance(inner, str) or not inner or not (inner[0].isascii() and inner[0].isalpha()) or \
                    not all(c.isascii() and (c.isalnum() or c in "_-") for c in inner) or \
                    inner.upper() in ("AND", "OR"):
                raise fail(path + ".label", "expected a label name")
            return Label(inner)
        if kind not in ("and", "or"):
            raise fail(path, f'unknown key {kind!r}; expected "label", "and" or "or"')
        if not isinstance(inner, list) or len(inner) < 2:
            raise fail(f"{path}.{kind}", "expected a list of two operands or more")
        operands = tuple(build(item, f"{path}.{kind}[{i}]", depth + 1) for i, item in enumerate(inner))
        return (AllOf if kind == "and" else AnyOf)(operands)

    tree = build(data, "$", 0)
    if known is not None:
        unknown = sorted(labels_of(tree) - set(known))
        if unknown:
            raise PolicyError([PolicyDiagnostic("unknown_label", f"unknown label `{name}`", NO_SPAN)
                               for name in unknown])
    return tree


# ---- evaluation ---------------------------------------------------------------------------------


def holds(node: Condition, labels: Collection[str]) -> bool:
    """Is the condition true when exactly ``labels`` are present?"""
    if isinstance(node, Label):
        return node.name in labels
    if isinstance(node, AllOf):
        return all(holds(o, labels) for o in node.operands)
    return any(holds(o, labels) for o in node.operands)


def because(node: Condition, labels: Collection[str]) -> frozenset[str]:
    """The present labels that make the condition true (every true branch of an OR counts); empty
    when it is false. The condition holds on these labels alone."""
    if not holds(node, labels):
        return frozenset()
    if isinstance(node, Label):
        return frozenset({node.name})
    return frozenset().union(*(because(o, labels) for o in node.operands))
