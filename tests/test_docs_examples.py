"""Run the examples of docs/language.md, so that the language reference cannot rot.

The document marks its runnable examples by the info string of their code fence
(docs/language.md, "About the examples", says the same for writers):

* ```pql            one or more expressions, separated by blank lines. Each must parse and check
                    against the Luma schema, and survive the round trips
                    parse(render(check(x))) == check(x) and from_json(to_json(t)) == t.
* ```pql-error      header lines `# error: CODE[, CODE …]` (every code the run reports, in order),
                    optionally `# segments: {JSON catalogue}` and `# key: KEY`; then one
                    expression, which must fail with exactly those codes. The header is not part
                    of the expression.
* ```pql-diagnostic directly after a pql-error block: the exact text of its diagnostics
                    (str(PqlError): every error with its caret snippet and hint).
* ```pql-render     source lines, each group followed by a line `→ CANONICAL`: render(check(SOURCE)).
* ```json profile   a profile document (SPEC.md) for the pql-eval blocks that follow it.
* ```pql-eval as_of=ISO
                    lines `TRUE|FALSE|UNKNOWN  EXPRESSION` (an indented line continues the
                    expression above): the value of the expression for the last profile block
                    above, at as_of, as explain() reports it; the compiled predicate must agree.
* ```python         a self-contained snippet, executed as is (its asserts are part of the test).

Parts of the document generated from the code (the function table from the registry, the Luma
schema, the keyword list) sit between `<!-- BEGIN GENERATED: NAME -->` and
`<!-- END GENERATED: NAME -->` and must equal what the generators below produce.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from cdp.dsl import PqlError, check, from_json, parse, render, to_json
from cdp.dsl.errors import ERROR_CODES
from cdp.dsl.render import keywords
from cdp.pqltypes import BOOLEAN, DATE, DATETIME, INTEGER, NUMBER, STRING, list_of
from cdp.engine import compile_predicate, explain, load_profile
from cdp.functions import all_functions
from cdp.schema import luma_schema
from cdp.schema.model import BUILTIN_EVENT_FIELDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"


# ---- reading the document -------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    info: str  # the fence's info string: "pql", "pql-eval as_of=…", "json profile" …
    body: str
    line: int  # line of the opening fence, from 1

    @property
    def kind(self) -> str:
        return self.info.split()[0] if self.info else ""

    @property
    def where(self) -> str:
        return f"docs/language.md:{self.line}"


def read_blocks(text: str) -> list[Block]:
    """Fenced code blocks (fences at the start of a line, closed by a bare ```)."""
    blocks: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, info, body = i, lines[i][3:].strip(), []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"docs/language.md:{start + 1}: code block is never closed"
            blocks.append(Block(info, "\n".join(body), start + 1))
        i += 1
    return blocks


TEXT = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
BLOCKS = read_blocks(TEXT)


def blocks_of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind == kind]


def ids(blocks: list[Block]) -> list[str]:
    return [f"line{b.line}" for b in blocks]


def split_expressions(body: str) -> list[str]:
    return [chunk.strip("\n") for chunk in re.split(r"\n[ \t]*\n", body) if chunk.strip()]


# ---- what every valid example must satisfy --------------------------------------------------


def assert_valid(text: str, where: str, **kwargs) -> None:
    try:
        typed = check(text, **kwargs)
    except PqlError as exc:
        pytest.fail(f"{where}: example does not check:\n{text}\n\n{exc}")
    assert typed.type == BOOLEAN, where
    canonical = render(typed)
    assert parse(canonical) == typed, f"{where}: parse(render(x)) != x for\n{text}\ncanonical: {canonical}"
    assert render(parse(canonical)) == canonical, f"{where}: the canonical text is not stable: {canonical}"
    data = to_json(typed)
    assert json.loads(json.dumps(data)) == data, f"{where}: the JSON form is not plain JSON"
    assert from_json(data) == typed, f"{where}: from_json(to_json(x)) != x for\n{text}"


def test_the_document_exists_and_has_examples():
    assert DOC.exists(), f"{DOC} is missing"
    kinds = [b.kind for b in BLOCKS]
    for kind, least in (("pql", 15), ("pql-error", 15), ("pql-diagnostic", 10), ("pql-eval", 5),
                        ("pql-render", 1), ("python", 1)):
        assert kinds.count(kind) >= least, f"expected at least {least} ```{kind} blocks, found {kinds.count(kind)}"
    assert len(blocks_of("json")) >= 1


def test_every_fence_is_known():
    known = {"pql", "pql-error", "pql-diagnostic", "pql-render", "pql-eval", "python", "json", "text"}
    for block in BLOCKS:
        assert block.kind in known, f"{block.where}: unknown code block kind {block.info!r} (use ```text for prose)"


# ---- ```pql ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("pql"), ids=ids(blocks_of("pql")))
def test_pql_examples_are_valid(block: Block):
    expressions = split_expressions(block.body)
    assert expressions, f"{block.where}: empty pql block"
    for text in expressions:
        assert_valid(text, block.where)


# ---- ```pql-error and ```pql-diagnostic ------------------------------------------------------

_HEADER = re.compile(r"#\s*(error|segments|key):\s*(.*?)\s*$")


def split_error_block(block: Block) -> tuple[dict[str, str], str]:
    lines = block.body.split("\n")
    meta: dict[str, str] = {}
    while lines and (match := _HEADER.match(lines[0])):
        meta[match.group(1)] = match.group(2)
        lines.pop(0)
    assert "error" in meta, f"{block.where}: a pql-error block starts with `# error: CODE`"
    expression = "\n".join(lines).strip("\n")
    assert expression.strip(), f"{block.where}: no expression after the header"
    return meta, expression


def run_error_block(block: Block) -> PqlError:
    meta, expression = split_error_block(block)
    kwargs = {}
    if "segments" in meta:
        kwargs["segments"] = json.loads(meta["segments"])
    if "key" in meta:
        kwargs["key"] = meta["key"]
    try:
        check(expression, **kwargs)
    except PqlError as exc:
        return exc
    pytest.fail(f"{block.where}: expected an error, but this checks:\n{expression}")


@pytest.mark.parametrize("block", blocks_of("pql-error"), ids=ids(blocks_of("pql-error")))
def test_pql_error_examples_fail_with_their_codes(block: Block):
    meta, _expression = split_error_block(block)
    expected = [code.strip() for code in meta["error"].split(",")]
    for code in expected:
        assert code in ERROR_CODES, f"{block.where}: {code!r} is not an error code"
    error = run_error_block(block)
    assert error.codes == expected, f"{block.where}: expected {expected}, got {error.codes}:\n{error}"


def _diagnostic_pairs() -> list[tuple[Block, Block]]:
    pairs = []
    for index, block in enumerate(BLOCKS):
        if block.kind == "pql-diagnostic":
            previous = BLOCKS[index - 1] if index else None
            assert previous is not None and previous.kind == "pql-error", (
                f"{block.where}: a pql-diagnostic block must follow a pql-error block")
            pairs.append((previous, block))
    return pairs


@pytest.mark.parametrize("pair", _diagnostic_pairs(), ids=[f"line{d.line}" for _e, d in _diagnostic_pairs()])
def test_pql_diagnostics_are_the_real_output(pair: tuple[Block, Block]):
    error_block, shown = pair
    actual = str(run_error_block(error_block))
    assert shown.body.rstrip("\n") == actual, (
        f"{shown.where}: the documented diagnostic differs from a real run; the real output is:\n{actual}")


def test_every_error_code_has_an_example():
    documented = set()
    for block in blocks_of("pql-error"):
        meta, _ = split_error_block(block)
        documented.update(code.strip() for code in meta["error"].split(","))
    missing = sorted(set(ERROR_CODES) - documented)
    assert not missing, f"error codes without a pql-error example: {missing}"


# ---- ```pql-render ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("pql-render"), ids=ids(blocks_of("pql-render")))
def test_pql_render_examples(block: Block):
    pairs, source = [], []
    for line in block.body.split("\n"):
        if line.startswith("→ "):
            assert source, f"{block.where}: `{line}` has no source line above it"
            pairs.append(("\n".join(source), line[2:]))
            source = []
        elif line.strip():
            source.append(line)
    assert pairs and not source, f"{block.where}: expected SOURCE lines, each group followed by `→ CANONICAL`"
    for source_text, canonical in pairs:
        assert_valid(source_text, block.where)
        rendered = render(check(source_text))
        assert rendered == canonical, f"{block.where}: render({source_text!r}) is {rendered!r}"


# ---- ```json profile and ```pql-eval ----------------------------------------------------------

_CASE = re.compile(r"(TRUE|FALSE|UNKNOWN)\s+(\S.*)$")


def eval_cases(block: Block) -> list[tuple[str, str]]:
    cases: list[list[str]] = []
    for line in block.body.split("\n"):
        if not line.strip():
            continue
        match = _CASE.match(line)
        if match:
            cases.append([match.group(1), match.group(2)])
        elif line[:1].isspace() and cases:
            cases[-1][1] += "\n" + line
        else:
            pytest.fail(f"{block.where}: cannot read the line {line!r} (TRUE|FALSE|UNKNOWN EXPRESSION)")
    return [(expected, text) for expected, text in cases]


def profile_for(block: Block):
    above = [b for b in BLOCKS if b.info == "json profile" and b.line < block.line]
    assert above, f"{block.where}: no ```json profile block above this pql-eval block"
    return load_profile(json.loads(above[-1].body))


@pytest.mark.parametrize("block", blocks_of("pql-eval"), ids=ids(blocks_of("pql-eval")))
def test_pql_eval_examples(block: Block):
    options = dict(part.split("=", 1) for part in block.info.split()[1:])
    assert "as_of" in options, f"{block.where}: write ```pql-eval as_of=2026-11-28T12:00:00Z"
    as_of = datetime.fromisoformat(options["as_of"].replace("Z", "+00:00"))
    profile = profile_for(block)
    cases = eval_cases(block)
    assert cases, f"{block.where}: empty pql-eval block"
    for expected, text in cases:
        assert_valid(text, block.where)
        value = explain(text, profile, as_of)[0]["value"]
        assert value == expected, f"{block.where}: {text}\n  documented {expected}, evaluates to {value}"
        qualifies = compile_predicate(text)(profile, as_of)
        assert qualifies is (expected == "TRUE"), f"{block.where}: the predicate disagrees with explain on {text}"


def test_profile_blocks_load():
    profiles = [b for b in BLOCKS if b.info == "json profile"]
    assert profiles, "no ```json profile block"
    for block in profiles:
        load_profile(json.loads(block.body))


# ---- ```python -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("python"), ids=ids(blocks_of("python")))
def test_python_snippets_run(block: Block):
    code = compile(block.body, block.where, "exec")
    exec(code, {"__name__": "docs_example"})  # noqa: S102 - our own documentation


# ---- generated sections ----------------------------------------------------------------------

_TYPE_SAMPLES = {  # two probes per parameter kind: does the result follow the argument's type?
    "string": (STRING, STRING),
    "integer": (INTEGER, INTEGER),
    "numeric": (INTEGER, NUMBER),
    "temporal": (DATE, DATETIME),
    "list": (list_of(STRING), list_of(INTEGER)),
    "scalar": (STRING, INTEGER),
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _result(function) -> str:
    required = function.params[: max(function.arity[0], 1)] if function.params else ()
    first = function.result([_TYPE_SAMPLES[p.accepts][0] for p in required])
    second = function.result([_TYPE_SAMPLES[p.accepts][1] for p in required])
    if first == second:
        return f"`{first}`"
    if function.variadic:
        return "the arguments' common type"
    return f"the type of `{function.params[0].name}`"


def _argument(param) -> str:
    kind = "a string literal" if param.literal_only else param.describe()
    return f"`{param.name}`: {kind}"


def generate_functions() -> str:
    rows = ["| function | arguments | result | description | example |", "|---|---|---|---|---|"]
    for function in all_functions():
        arguments = ", ".join(_argument(p) for p in function.params) or "none"
        if function.variadic:
            arguments += " (repeated)"
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{function.signature()}`", arguments, _result(function), function.doc, _code(function.example),
        )) + " |")
    return "\n".join(rows)


def _allowed(values) -> str:
    if len(values) > 12:
        return f"{', '.join(f'`{v}`' for v in values[:6])} … ({len(values)} values)"
    return ", ".join(f"`{v}`" for v in values)


def generate_schema() -> str:
    schema = luma_schema()
    out = ["Profile attributes:", "", "| attribute | type | allowed values |", "|---|---|---|"]
    for path, type_ in schema.profile.items():
        values = _allowed(schema.enums.get(path, ()))
        out.append(f"| `{path}` | `{type_}` | {values} |")
    out += ["", "Event fields (`id`, `type` and `timestamp` are built in and always present):", "",
            "| field | type | allowed values |", "|---|---|---|"]
    for path, type_ in {**BUILTIN_EVENT_FIELDS, **schema.event}.items():
        values = _allowed(schema.enums.get(path, ()))
        if path == "type":
            values = ", ".join(f"`{v}`" for v in schema.event_types)
        out.append(f"| `{path}` | `{type_}` | {values} |")
    return "\n".join(out)


def generate_keywords() -> str:
    return "```text\n" + "\n".join(_wrap(sorted(keywords()), 96)) + "\n```"


def _wrap(words: list[str], width: int) -> list[str]:
    lines, current = [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def generate_support() -> str:
    from cdp.engine.support import support_matrix
    from cdp.functions import BACKENDS

    rows = ["| function | " + " | ".join(BACKENDS) + " |", "|---|" + "---|" * len(BACKENDS)]
    for name, supported in support_matrix():
        rows.append(f"| `{name}` | " + " | ".join("yes" if supported[b] else "no" for b in BACKENDS) + " |")
    return "\n".join(rows)


GENERATED = {"functions": generate_functions, "schema": generate_schema, "keywords": generate_keywords,
             "support": generate_support}


def generated_section(name: str) -> str:
    match = re.search(rf"<!-- BEGIN GENERATED: {name} -->\n(.*?)\n<!-- END GENERATED: {name} -->", TEXT, re.S)
    assert match, f"docs/language.md has no generated section {name!r}"
    return match.group(1).strip("\n")


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_sections_match_the_code(name: str):
    expected = GENERATED[name]()
    assert generated_section(name) == expected, (
        f"the {name} section of docs/language.md is out of date; it should read:\n\n{expected}")


@pytest.mark.parametrize("function", all_functions(), ids=[f.name for f in all_functions()])
def test_registry_examples_are_valid(function):
    assert_valid(function.example, f"the registry example of {function.name}")
