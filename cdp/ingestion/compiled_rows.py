"""A CSV row of a profile batch straight to the row the spool keeps: the mapping and the validation
compiled together, once per batch, into one generated function of the row's cells.

The batch's validate pass otherwise maps a row into a nested record (mapping.compile_rows) that the
compiled validator (compiled_validation.py) walks and flattens again, and builds a ValidRecord the
spool takes apart into a tuple. This function reads the mapped cells by their position in the
header, converts them as the mapping does, checks them as the validator does and returns the
spool's tuple (staging.Spool) — or None at the first sign of anything else: a row the function
does not answer goes the general way (a Row, the mapping, the validator), which then finds and
words every error, so codes, messages, columns and row numbers stay what they were by construction
(as the compiled validator leaves errors to the interpreted one). Its answers equal the general
way's on generated rows and mappings (tests/test_ingestion_compiled_rows.py).

Compiled only where it gives exactly the general way's record; otherwise :func:`compile_csv_rows`
answers None and every row goes the general way:

* a profile dataset (events: the general way);
* every target an identity of the sandbox's namespaces or a field the compiled validator reaches
  through nested objects, no target a prefix of another, at most MAX_IDENTITIES_PER_RECORD
  identity columns;
* the attributes in the order the validator's walk of the nested record gives them for every set
  of non-empty cells — the order of the rules when each object's fields are contiguous in them.

A column the header lacks maps to nothing (the mapping reads None); a header naming a column twice
gives its last cell (as ``dict(zip(header, cells))``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import cdp.ingestion as limits
from cdp.engine.profile import INTEGER_MAX, INTEGER_MIN
from cdp.identity.namespaces import normalize
from cdp.ingestion.compiled_validation import _level
from cdp.ingestion.mapping import Rule, _compiled_converter
from cdp.schema import Schema

# (row number, cells) → the spooled tuple (staging.Spool), or None: the general way decides
RowFunction = Callable[[int, list[str]], tuple | None]


def _grouped(paths: list[tuple[str, ...]]) -> bool:
    """Whether the walk of the nested record (keys in order of first insertion at each level) lists
    the paths in this order: true for every subset when it is true for all of them."""
    def walk(items: list[tuple[str, ...]], depth: int) -> list[tuple[str, ...]]:
        groups: dict[str, list[tuple[str, ...]]] = {}
        for path in items:
            groups.setdefault(path[depth], []).append(path)
        order: list[tuple[str, ...]] = []
        for members in groups.values():
            leaves = [p for p in members if len(p) == depth + 1]
            order.extend(leaves if leaves else walk(members, depth + 1))
        return order
    return walk(paths, 0) == paths


def compile_csv_rows(header: list[str], rules: list[Rule], kind: str, schema: Schema,
                     namespaces: Collection[str]) -> RowFunction | None:
    """The function of (row number, cells) for this header, or None where it would not be exact."""
    if kind != "profile":
        return None
    fields = dict(schema.profile)
    table = _level("", fields, schema.profile_objects, schema, {})
    width = len(header)
    position = {name: index for index, name in enumerate(header)}  # the last of a repeated name
    targets = [rule.target for rule in rules]
    if any(other.startswith(target + ".") for target in targets for other in targets):
        return None
    if sum(target.startswith("identity.") for target in targets) > limits.MAX_IDENTITIES_PER_RECORD:
        return None
    env: dict[str, Any] = {"normalize": normalize}
    lines: list[str] = []
    used: list[int] = []
    room = limits.RECORD_MAX_BYTES - 256  # mapping.record_size_bound, as the validator reads it
    paths: list[tuple[str, ...]] = []
    for n, rule in enumerate(rules):
        index = position.get(rule.column)
        if index is None:
            continue  # the mapping reads None: nothing set, nothing counted
        used.append(index)
        room -= 2 * len(rule.target) + 64
        simple = all(t[0] in ("trim", "lower") for t in rule.transforms)
        steps = "".join(".strip()" if t[0] == "trim" else ".lower()" for t in rule.transforms)
        if rule.target.startswith("identity."):
            namespace = rule.target.removeprefix("identity.")
            if namespace not in namespaces:
                return None
            if simple:
                lines += [f"v = c[{index}]", 'if "\\x00" in v: return None', *([f"v = v{steps}"] if steps else []),
                          "if v:"]
            else:
                env[f"convert{n}"] = _compiled_converter(rule, fields)
                lines += [f"v = convert{n}(c[{index}])", "if v is not None:",
                          "    v = v if isinstance(v, str) else str(v)"]
            lines += [f"    p = ({namespace!r}, normalize({namespace!r}, v))", "    if p not in ids: ids.append(p)"]
            continue
        parts = tuple(rule.target.split("."))
        level = table
        for part in parts[:-1]:
            entry = level.get(part)
            if entry is None or entry[1] is not None:
                return None
            level = entry[2]
        entry = level.get(parts[-1])
        if entry is None or entry[1] is None or entry[0] != rule.target:
            return None
        paths.append(parts)
        type_ = fields[rule.target]
        env[f"check{n}"] = entry[1]
        allowed = schema.enums.get(rule.target)
        if simple and type_.name not in ("integer", "number", "boolean", "list"):
            # text stays text: the mapping's NUL check, its steps, "" sets nothing
            lines += [f"v = c[{index}]", 'if "\\x00" in v: return None', *([f"v = v{steps}"] if steps else []),
                      "if v:"]
            if type_.name == "string":  # the validator's string check passes it as it is; then its allowed values
                if allowed:
                    env[f"allowed{n}"] = frozenset(allowed)
                    lines.append(f"    if v not in allowed{n}: return None")
                lines.append(f"    out[{rule.target!r}] = v")
            else:
                lines.append(f"    out[{rule.target!r}] = check{n}(v)")
        elif simple and type_.name == "integer" and not allowed:
            # the mapping's int() of the stripped text (NUL: int() refuses it as the mapping does), in
            # the validator's range
            lines += [f"v = c[{index}]{steps}", "if v:", "    v = int(v.strip())",
                      f"    if not {INTEGER_MIN} <= v <= {INTEGER_MAX}: return None", f"    out[{rule.target!r}] = v"]
        else:
            env[f"convert{n}"] = _compiled_converter(rule, fields)
            lines += [f"v = convert{n}(c[{index}])", "if v is not None:", f"    out[{rule.target!r}] = check{n}(v)"]
    if not _grouped(paths):
        return None
    size = " + ".join(f"len(c[{i}])" for i in used) or "0"
    source = "\n    ".join([
        "def row(number, c):",
        f"if len(c) != {width}: return None",
        # the size bound: all cells' lengths first (one call), the mapped ones' only when that is too much
        f"if 9 * sum(map(len, c)) > {room} and 9 * ({size}) > {room}: return None",
        "ids = []",
        "out = {}",
        *lines,
        "if not ids: return None",
        "return (number, ids, out, [], None, None, None, {}, None, True)",
    ])
    exec(compile(source, "<csv row of a profile batch>", "exec"), env)  # noqa: S102 - our own source
    return env["row"]
