"""`in segment "key"` in SQL (DSL.md §8): the part of the shared compiler (cdp.engine.sql.base)
that turns a reference into stored memberships, an inlined leaf condition, or one MATERIALIZED CTE
per referenced segment and statement, within limits that keep a statement compilable."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cdp.dsl import Diagnostic, PqlError, ast, check
from cdp.engine.support import UnsupportedOnBackend
from cdp.storage.models import memberships, profiles

# `in segment` chains deeper than this are too_complex: SQLAlchemy compiles nested CTEs recursively
# (about 31 Python frames a level), and a statement must compile within Python's recursion limit
MAX_SEGMENT_DEPTH = 16
MAX_SEGMENT_REFERENCES = 1000  # distinct segments one expression may reach through references


class SegmentReferences:
    """Mixed into SqlCompiler: it reads the compiler's catalogue (``segments``, ``memberships_of``,
    ``schema``, ``sandbox``, ``segment_profiles``, ``segment_scope``), its current ``profile`` alias
    and its per-statement state (``_segment_ctes``, ``_segment_stack``, ``_expansion``)."""

    def c_SegmentRef(self, node: ast.SegmentRef, ctx):
        # `p.pk IN (SELECT …)`: TRUE or FALSE, never UNKNOWN (DSL.md §8)
        if node.key in self.memberships_of:
            return self.profile.c.pk.in_(sa.select(memberships.c.profile_pk).where(
                memberships.c.segment_pk == sa.literal(self.memberships_of[node.key], memberships.c.segment_pk.type),
                memberships.c.status.in_(["realized", "existing"])))
        if self.inline_leaf_segments:
            inlined = self.inline_leaf(node)
            if inlined is not None:
                return inlined
        members = self.segment_cte(node)
        return self.profile.c.pk.in_(sa.select(members.c.pk))

    def inline_leaf(self, node: ast.SegmentRef) -> ColumnElement | None:
        """A referenced segment without references of its own, as its condition on the current
        profile, TRUE or FALSE (an UNKNOWN condition is not membership); None for another segment."""
        if node.key not in self.segments or node.key in self._segment_stack:
            return None  # segment_cte refuses it clearly
        typed = check(self.segments[node.key], self.schema)
        if any(isinstance(ref, ast.SegmentRef) for ref in ast.walk(typed)):
            return None
        return sa.func.coalesce(self.condition(typed), sa.false())

    def segment_cte(self, node: ast.SegmentRef):
        """The members of a referenced segment as one CTE per segment and statement, compiled
        once however often (and however deep) it is referenced, so the SQL grows linearly with
        the number of segments in the reference graph, never with the number of paths through it.
        MATERIALIZED: the database computes it once too (SQLite and PostgreSQL would otherwise
        inline a CTE at each use)."""
        found = self._segment_ctes.get(node.key)
        if found is not None:
            return found
        if node.key not in self.segments:
            raise UnsupportedOnBackend(self.dialect, f'unknown segment "{node.key}": no definition was given')
        if node.key in self._segment_stack:
            raise UnsupportedOnBackend(self.dialect, f'segment "{node.key}" refers to itself')
        if len(self._segment_stack) >= MAX_SEGMENT_DEPTH or len(self._segment_ctes) >= MAX_SEGMENT_REFERENCES:
            limit = (f"{MAX_SEGMENT_DEPTH} segments deep" if len(self._segment_stack) >= MAX_SEGMENT_DEPTH
                     else f"{MAX_SEGMENT_REFERENCES} referenced segments")
            raise PqlError([Diagnostic("too_complex", f'the reference to segment "{node.key}" goes beyond the limit '
                                       f"of {limit}", node.span,
                                       hint="segments may reference segments, but not without end; "
                                            "flatten the chain")])
        typed = check(self.segments[node.key], self.schema)  # references resolved here, one CTE each
        outer = self.profile
        name = self.fresh("sp")
        self.profile = profiles.alias(name) if self.segment_profiles is None else self.segment_profiles(name)
        self._segment_stack.append(node.key)
        try:
            condition = self.condition(typed)
            query = sa.select(self.profile.c.pk).where(condition)
            if self.sandbox is not None:
                query = query.where(self.profile.c.sandbox == sa.literal(self.sandbox, sa.String))
            if self.segment_scope is not None:
                query = query.where(self.segment_scope(self.profile))
        finally:
            self._segment_stack.pop()
            self.profile = outer
        cte = query.cte(self.fresh("seg")).prefix_with("MATERIALIZED")
        self._segment_ctes[node.key] = cte
        # SQLite's parser copies a CTE's SELECT into every place that names it (it then runs a
        # MATERIALIZED one once), so a graph that references segments many times over many levels
        # still multiplies there: count the copies and refuse clearly before SQLite does
        copies = 1 + sum(self._expansion.get(ref.key, 1) for ref in ast.walk(typed) if isinstance(ref, ast.SegmentRef)
                         and ref.key not in self.memberships_of)
        self._expansion[node.key] = copies
        self.check_segment_copies(node, copies)
        return cte

    def check_segment_copies(self, node: ast.SegmentRef, copies: int) -> None:
        """A dialect whose parser copies a CTE into each place naming it refuses, clearly, a
        reference graph that would copy too much (the common answer: nothing to refuse)."""
