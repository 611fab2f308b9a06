"""The in-memory backend: a checked tree → Python source → one compiled predicate.

Evaluation walks no tree. Each boolean node compiles in three modes so that SQL's three-valued
logic (DSL.md §9) costs nothing where it cannot matter:

* ``truth``   — a Python bool: is the node TRUE?
* ``falsity`` — a Python bool: is the node FALSE?
* ``value``   — True / False / None (UNKNOWN), for the places that need the third value.

``not a`` is TRUE exactly when ``a`` is FALSE, ``a and b`` is FALSE when either is FALSE, and so
on, so the top level asks only ``truth(root)`` and the generated code reads like the
hand-written function would. Non-boolean nodes compile to ``value`` (None is SQL's null).

The code generator is split by node family, as the SQL compiler is by dialect: ``values.py``
(literals, names, calls, boolean structure, arithmetic), ``predicates.py`` (comparisons, `in`,
`between`, string and list tests), ``events.py`` (event terms, aggregates, sequences, segment
references), mixed into one visitor in ``codegen.py``; ``api.py`` compiles, caches and explains.
"""

from cdp.engine.memory.api import (
    _CACHE, CompiledCatalogue, CompiledSegment, Predicate, compile_predicate, compile_segment, explain, format_value,
    render_string_value,
)
from cdp.dsl.regex import like_to_regex
from cdp.engine.memory.common import as_instant, kleene_and, kleene_or

__all__ = ["CompiledCatalogue", "CompiledSegment", "Predicate", "as_instant", "compile_predicate", "compile_segment", "explain",
           "format_value", "kleene_and", "kleene_or", "like_to_regex", "render_string_value", "_CACHE"]
