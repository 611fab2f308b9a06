"""Expression fuzzing: text generated from the Lark grammar itself (cdp/devtools/pql_fuzz.py), half
of it mutated token-wise, goes through parse, check, compile for memory and compile to SQL for
SQLite and PostgreSQL. Only the language's own errors may come out — never a crash — and every
input is answered in under 100 ms (this thread's CPU time without the garbage collector's pauses:
the machine is shared; the wall-clock
figures of 100,000 inputs are in bench/RESULTS.md, `bench/run_expression_fuzz.sh`).

Found this way (now checked): `[] is null`, `3 days is null` and `[] has all []`, `3 days in []` reached the
compilers, which had no form for a literal list or a duration as a value."""

from __future__ import annotations

import gc
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.devtools.pql_fuzz import generate, grammar, run_one

BUDGET_SECONDS = 0.1


@st.composite
def expressions(draw) -> str:
    return generate(lambda n: draw(st.integers(0, n - 1)) if n > 1 else 0)


def test_every_rule_of_the_grammar_can_be_derived_and_every_terminal_has_texts():
    g = grammar()
    assert set(g.height) == set(g.rules), set(g.rules) - set(g.height)
    assert all(texts for texts in g.terminals.values())
    assert set(g.terminals["COMPARE"]) == {"!=", "<=", ">=", "=", "<", ">"}
    assert {"within", "days", "count_distinct"} <= {t.lower() for texts in g.terminals.values() for t in texts}


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(expressions())
def test_only_language_errors_and_every_answer_within_the_budget(text):
    run_one("loyalty.points > 1")  # the parser is built on first use: not part of an answer
    gc.disable()  # a collection pause belongs to the whole heap (Hypothesis's included), not to this input
    try:
        outcome = run_one(text)
    finally:
        gc.enable()
    # a crash raises out of run_one; a refusal is the language's, with its code
    assert outcome.error is None or re.fullmatch(r"[a-z_]+", outcome.error), (text, outcome)
    assert outcome.cpu_seconds < BUDGET_SECONDS, (text, outcome)


def test_some_inputs_compile_everywhere_and_some_fail_in_each_stage():
    import random

    rng = random.Random(7)
    stages = {run_one(generate(rng.randrange)).stage for _ in range(1500)}
    assert {"parse", "check", "compiled"} <= stages, stages
