"""Errors as data (DSL.md §11): every diagnostic has a code, a span, a caret snippet and a hint.

The language raises exactly one exception type, :class:`PqlError`, carrying every diagnostic the
parser or checker found, so a user sees all their mistakes at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR_CODES = (
    "syntax_error",
    "unknown_field",
    "type_mismatch",
    "unknown_function",
    "wrong_arguments",
    "invalid_literal",
    "invalid_regex",
    "unknown_segment",
    "segment_cycle",
    "too_complex",
)

# Diagnostics that do not stop an expression from checking (DSL.md §11 lists the errors; these are
# the project's own, docs/language.md §11): reported beside the result.
WARNING_CODES = (
    "unlisted_value",  # a comparison with a value outside the field's allowed values
)


@dataclass(frozen=True, slots=True)
class Span:
    """A region of source text. Lines and columns count from 1; columns count code points.

    ``end_line``/``end_column`` point just past the last character (exclusive), as in Lark and
    LSP; ``start``/``end`` are the same region as code-point offsets into the text.
    """

    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0
    end: int = 0

    @staticmethod
    def covering(first: "Span", last: "Span") -> "Span":
        return Span(first.line, first.column, last.end_line, last.end_column, first.start, last.end)

    @staticmethod
    def at_offset(text: str, start: int, end: int | None = None) -> "Span":
        end = start if end is None else end
        line, column = _line_column(text, start)
        end_line, end_column = _line_column(text, end)
        return Span(line, column, end_line, end_column, start, end)


NO_SPAN = Span(0, 0, 0, 0)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    line_start = text.rfind("\n", 0, offset) + 1
    return line, offset - line_start + 1


def caret_snippet(source: str, span: Span) -> str:
    """The source line of ``span``'s start and a caret under the whole span on that line ("" when
    there is no source); shared by every language of the project (PQL, policy deny conditions)."""
    if not source or span.line < 1:
        return ""
    lines = source.split("\n")
    if span.line > len(lines):
        return ""
    text_line = lines[span.line - 1]
    start = span.column - 1
    if span.end_line == span.line:
        end = max(span.end_column - 1, start + 1)
    else:
        end = max(len(text_line), start + 1)
    # the caret line keeps the tabs of the source line, so the caret stands under the span
    pad = "".join("\t" if ch == "\t" else " " for ch in text_line[:start])
    return f"{text_line}\n{pad}{'^' * (end - start)}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    hint: str | None = None
    source: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES and self.code not in WARNING_CODES:  # a typo in our code must not reach users
            raise ValueError(f"unknown error code {self.code!r}")

    def snippet(self) -> str:
        """The source line of the span's start and a caret under the whole span on that line."""
        return caret_snippet(self.source, self.span)

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        head = f"{self.code} at line {self.span.line}, column {self.span.column}: {self.message}"
        parts = [head]
        snippet = self.snippet()
        if snippet:
            parts.append(snippet)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class PqlError(Exception):
    """Raised by parse/check with every diagnostic found (never an empty list)."""

    def __init__(self, errors: list[Diagnostic]):
        if not errors:
            raise ValueError("PqlError needs at least one diagnostic")
        self.errors = list(errors)
        super().__init__("\n\n".join(str(e) for e in self.errors))

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self.errors]

    def to_dict(self) -> dict:
        return {"ok": False, "errors": [e.to_dict() for e in self.errors]}
