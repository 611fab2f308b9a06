"""The analytic engines (DuckDB, embedded; Apache Spark next), over profiles and events as tables.

They run the one compiler's query (cdp.engine.sql: the dialect class ``duckdb.py``), rendered to SQL text with its parameters, over two relations in the snapshot
layout (cdp/snapshots writes it to Parquet; :func:`document_tables` makes it from profile
documents, for ``cdp evaluate`` and the conformance suite):

* ``profiles``: ``pk``, ``sandbox``, ``external_id``, ``attributes`` (JSON text, dotted keys)
  and, on DuckDB, the schema's scalar attributes as typed columns ``"a.<key>"`` (:func:`flat_select`:
  the compiler's own JSON read, evaluated once when the relation is made instead of per query);
* ``events``: ``profile_pk``, ``event_id``, ``type``, ``ts`` (UTC, no zone), ``fields`` (JSON)
  and, on DuckDB, the schema's scalar event fields as typed columns ``"f.<key>"`` (the same way).

References to segments evaluated earlier in a run read ``memberships`` (``segment_pk``,
``profile_pk``, ``status``), which a session keeps itself (:meth:`AnalyticSession.remember`).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from cdp.dsl import ast, check
from cdp.engine.profile import LoadedProfile, load_profile
from cdp.engine.sql.base import SqlCompiler
from cdp.engine.sql.duckdb import EVENT_PREFIX, FLAT_PREFIX, DuckDBCompiler
from cdp.engine.support import require_support
from cdp.pqltypes import STRING
from cdp.schema import Schema, luma_schema
from cdp.schema.model import BUILTIN_EVENT_FIELDS

ANALYTIC_ENGINES = ("duckdb", "spark")  # Spark: cdp.engine.sql.spark_session


def _pyarrow():
    import pyarrow

    return pyarrow


def profiles_schema():
    pa = _pyarrow()
    return pa.schema([("pk", pa.int64()), ("sandbox", pa.string()), ("external_id", pa.string()),
                      ("attributes", pa.string())])


def events_schema():
    pa = _pyarrow()
    return pa.schema([("profile_pk", pa.int64()), ("event_id", pa.string()), ("type", pa.string()),
                      ("ts", pa.timestamp("us")), ("fields", pa.string())])


def stored(value: Any) -> Any:
    """A loaded value as the JSON documents of a snapshot hold it: dates 'YYYY-MM-DD', datetimes
    in UTC ('YYYY-MM-DD HH:MM:SS.ffffff', which DuckDB and Spark both cast)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [stored(v) for v in value]
    return value


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value


def document_tables(documents: Iterable[Mapping | LoadedProfile], *, sandbox: str, schema: Schema | None = None,
                    first_pk: int = 1):
    """Profile documents (validated) → the ``profiles`` and ``events`` Arrow tables, pks in order."""
    pa = _pyarrow()
    profile_rows: dict[str, list] = {name: [] for name in profiles_schema().names}
    event_rows: dict[str, list] = {name: [] for name in events_schema().names}
    for pk, document in enumerate(documents, start=first_pk):
        profile = document if isinstance(document, LoadedProfile) else load_profile(document, schema)
        profile_rows["pk"].append(pk)
        profile_rows["sandbox"].append(sandbox)
        profile_rows["external_id"].append(profile.id)
        profile_rows["attributes"].append(json.dumps({k: stored(v) for k, v in profile.attributes.items()},
                                                     ensure_ascii=False))
        for event in profile.events:
            event_rows["profile_pk"].append(pk)
            event_rows["event_id"].append(event["id"])
            event_rows["type"].append(event["type"])
            event_rows["ts"].append(naive_utc(event["timestamp"]))
            event_rows["fields"].append(json.dumps(
                {k: stored(v) for k, v in event.items() if k not in ("id", "type", "timestamp")}, ensure_ascii=False))
    return (pa.Table.from_pydict(profile_rows, schema=profiles_schema()),
            pa.Table.from_pydict(event_rows, schema=events_schema()))


# ---- flat attribute columns (DuckDB) ------------------------------------------------------------

_FLAT_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
               "datetime": "TIMESTAMP"}
_FLAT_KEY = re.compile(r"[A-Za-z0-9_.\-]+")  # names any Parquet reader takes; other keys stay JSON reads


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def flat_items(schema: Schema, *, event_fields: bool = False) -> list[tuple[str, str]]:
    """(column, SQL expression over ``attributes``) for each scalar attribute of the schema: the
    expression is the DuckDB compiler's JSON read of it, rendered, so a flat column holds exactly
    what the query would have read (same functions, same casts, same session time zone).
    ``event_fields``: (column, expression over ``fields``) for each scalar event field instead."""
    reader = SqlCompiler("duckdb", datetime(2000, 1, 1, tzinfo=timezone.utc), schema=schema)
    assert isinstance(reader, DuckDBCompiler)
    document, prefix, fields = ("fields", EVENT_PREFIX, schema.event) if event_fields else \
        ("attributes", FLAT_PREFIX, schema.profile)
    items = []
    for key, type_ in sorted(fields.items()):
        if key in BUILTIN_EVENT_FIELDS and event_fields:  # columns of their own (id, type, ts)
            continue
        if type_.name in _FLAT_TYPES and _FLAT_KEY.fullmatch(key):
            expression = reader.json_read(sa.column(document), key, type_, flat=False)
            items.append((prefix + key, str(expression.compile(dialect=DuckDBDialect(),
                                                               compile_kwargs={"literal_binds": True}))))
    return items


def list_items(schema: Schema) -> list[tuple[str, str]]:
    """(column, SQL expression over ``attributes``) for each list attribute of the schema: the
    list's elements as text (``VARCHAR[]``, a Parquet list of strings), null where the attribute
    is missing or JSON null, an element null where it is JSON null — what Spark's
    ``from_json(get_json_object(attributes, '$['key']'), 'array<string>')`` decodes per row, so
    Spark (cdp.engine.sql.spark) reads the column instead and casts its elements as it casts
    those. DuckDB's compiler does not read these columns (its JSON list reads stay as they were).
    A row whose value is not a JSON list fails the cast: the column is left out (write_flat)."""
    reader = SqlCompiler("duckdb", datetime(2000, 1, 1, tzinfo=timezone.utc), schema=schema)
    items = []
    for key, type_ in sorted(schema.profile.items()):
        if type_.is_list and _FLAT_KEY.fullmatch(key):
            text = reader.json_read(sa.column("attributes"), key, STRING, flat=False)  # the list's JSON text
            rendered = str(text.compile(dialect=DuckDBDialect(), compile_kwargs={"literal_binds": True}))
            items.append((FLAT_PREFIX + key, f"CAST(CAST({rendered} AS JSON) AS VARCHAR[])"))
    return items


def write_flat(connection, source: str, schema: Schema, write: Callable[[str], Any], *,
               event_fields: bool = False, lists: bool = False) -> None:
    """``write(SELECT *, <flat columns> FROM <source>)`` on a DuckDB ``connection`` (a CREATE
    TABLE AS, a COPY), with the columns whose read succeeds on every row of ``source``. A value
    that does not cast (data stored before the schema changed) would stop a query reading it
    through JSON too: its column is left out, so the compiled query reads that attribute through
    JSON and stops (or not) exactly as before. The common case is one pass, the write's own.
    ``event_fields``: ``source`` is events, the columns are its event fields'. ``lists``: the list
    attribute columns too (:func:`list_items`), as a snapshot's profiles files have them."""

    def statement(chosen: list[tuple[str, str]]) -> str:
        return "SELECT *" + "".join(f", {expression} AS {_quoted(column)}" for column, expression in chosen) + \
            f" FROM {source}"

    items = flat_items(schema, event_fields=event_fields) + (list_items(schema) if lists and not event_fields else [])
    write_readable_columns(connection, source, items, statement, write)


def with_typed_columns(table, *, event_fields: bool, schema: Schema | None = None, lists: bool = False):
    """An Arrow profiles or events table (as :func:`document_tables` makes it) with the typed
    columns a snapshot's files have (cdp.snapshots.flat: attribute columns of ``attributes`` — with
    ``lists`` its list attribute columns too — or with ``event_fields`` event-field columns of
    ``fields``), computed the same way: by DuckDB's read of the JSON, in UTC, a column failing on
    some row left out. For an engine reading Arrow tables through Parquet (Spark) as it reads a
    snapshot."""
    import duckdb

    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("documents_arrow", table)
        written = []
        write_flat(connection, "documents_arrow", schema or luma_schema(),
                   lambda select: written.append(connection.sql(select).to_arrow_table()), event_fields=event_fields,
                   lists=lists)
        return written[-1]
    finally:
        connection.close()


def with_event_columns(events, schema: Schema | None = None):
    """The events table with its typed event-field columns (:func:`with_typed_columns`)."""
    return with_typed_columns(events, event_fields=True, schema=schema)


def write_readable_columns(connection, source: str, items: list[tuple[str, str]],
                           statement: Callable[[list[tuple[str, str]]], str], write: Callable[[str], Any]) -> None:
    """``write(statement(items))``; when a column's expression fails on some row of ``source``,
    ``write(statement(the items whose expression succeeds on every row))`` (write_flat says why)."""
    import duckdb

    try:
        write(statement(items))
        return
    except duckdb.Error:
        pass
    chosen = []
    for column, expression in items:
        try:
            connection.execute(f"SELECT count({expression}) FROM {source}").fetchall()
        except duckdb.Error:
            continue
        chosen.append((column, expression))
    write(statement(chosen))


def common_flat_columns(files: list[str], prefix: str = FLAT_PREFIX) -> tuple[list[str], bool]:
    """The flat columns (``prefix``) every file has, with the same type in each (a part written
    before a schema change, or before flat columns, or a file whose read of a column failed on
    some row, leaves those reads to the JSON); and whether the files' columns differ at all (then
    they are read by name)."""
    import pyarrow.parquet

    common: dict[str, object] | None = None
    shapes = set()
    for path in files:
        schema = pyarrow.parquet.read_schema(path)
        shapes.add(tuple((f.name, str(f.type)) for f in schema))
        found = {f.name: f.type for f in schema if f.name.startswith(prefix)}
        common = found if common is None else {k: t for k, t in common.items() if found.get(k) == t}
    return sorted(common or {}), len(shapes) > 1


def flat_attributes(connection, relation: str = "profiles", prefix: str = FLAT_PREFIX) -> dict[str, str]:
    """key → language type of the flat attribute columns a DuckDB relation has (``prefix``
    EVENT_PREFIX, relation ``events``: its flat event-field columns)."""
    names = {v: k for k, v in _FLAT_TYPES.items()}
    found = {}
    for column, column_type, *_rest in connection.execute(f"DESCRIBE {relation}").fetchall():
        if column.startswith(prefix) and column_type in names:
            found[column[len(prefix):]] = names[column_type]
    return found


def flat_event_fields(connection, relation: str = "events") -> dict[str, str]:
    """key → language type of the flat event-field columns a DuckDB relation has."""
    return flat_attributes(connection, relation, EVENT_PREFIX)


# ---- SQL text ---------------------------------------------------------------------------------


class DuckDBDialect(PGDialect):
    """DuckDB speaks PostgreSQL's SQL closely enough to render with its compiler; only the name
    (the compiler's key) and the parameter style ($1, $2, …) are DuckDB's."""

    name = "duckdb"
    supports_statement_cache = False

    def __init__(self, **kwargs):
        super().__init__(paramstyle="numeric_dollar", **kwargs)


def rendered(query: sa.Select | sa.CompoundSelect, dialect: sa.engine.Dialect) -> tuple[str, list | dict]:
    """The statement's SQL text and its bound values (positional or named, as the dialect's
    parameter style says); datetimes as UTC without a zone, as the snapshots hold them."""
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    processors = getattr(compiled, "_bind_processors", {})
    values = {}
    for name, value in compiled.construct_params().items():
        value = processors[name](value) if name in processors else value
        values[name] = naive_utc(value) if isinstance(value, datetime) else value
    if compiled.positiontup is not None:
        return compiled.string, [values[name] for name in compiled.positiontup]
    return compiled.string, values


def members_query(text_or_tree: str | ast.Node, *, engine: str, as_of: datetime, sandbox: str,
                  schema: Schema | None = None, segments: Mapping[str, str] | None = None,
                  memberships_of: Mapping[str, int] | None = None, flat: Mapping[str, str] | None = None,
                  flat_events: Mapping[str, str] | None = None) -> sa.Select:
    """SELECT pk, external_id of the qualifying profiles (order: pk). ``flat``: key → type of
    the relation's flat attribute columns (DuckDB), read instead of the JSON; ``flat_events``:
    the same of the events relation's flat event-field columns."""
    query, _names = _compiled_members(text_or_tree, engine=engine, as_of=as_of, sandbox=sandbox, schema=schema,
                                      segments=segments, memberships_of=memberships_of, flat=flat,
                                      flat_events=flat_events, names_used=0)
    return query


def members_queries(texts_or_trees: Sequence[str | ast.Node], *, engine: str, as_of: datetime, sandbox: str,
                    schema: Schema | None = None, segments: Mapping[str, str] | None = None,
                    memberships_of: Mapping[str, int] | None = None,
                    flat: Mapping[str, str] | None = None,
                    flat_events: Mapping[str, str] | None = None) -> list[sa.Select]:
    """:func:`members_query` of each expression, fit to be branches of one UNION ALL
    (:meth:`AnalyticSession.members_many`): each compiler numbers its aliases on from where the
    previous one stopped, so the CTEs of referenced segments (hoisted to the top of the
    statement) and the subqueries' aliases of different branches never share a name."""
    queries, names_used = [], 0
    for text_or_tree in texts_or_trees:
        query, names_used = _compiled_members(text_or_tree, engine=engine, as_of=as_of, sandbox=sandbox,
                                              schema=schema, segments=segments, memberships_of=memberships_of,
                                              flat=flat, flat_events=flat_events, names_used=names_used)
        queries.append(query)
    return queries


def _compiled_members(text_or_tree: str | ast.Node, *, engine: str, as_of: datetime, sandbox: str,
                      schema: Schema | None, segments: Mapping[str, str] | None,
                      memberships_of: Mapping[str, int] | None, flat: Mapping[str, str] | None,
                      names_used: int, flat_events: Mapping[str, str] | None = None) -> tuple[sa.Select, int]:
    """The members query and how many fresh names its compiler has used (``names_used``: how
    many earlier compilers of the same statement used; its own start after them)."""
    schema = schema or luma_schema()
    catalogue = dict(segments or {})
    typed = text_or_tree if isinstance(text_or_tree, ast.Node) and text_or_tree.type is not None \
        else check(text_or_tree, schema, segments=catalogue or None)
    require_support(typed, engine, catalogue)
    compiler = SqlCompiler(engine, as_of, schema=schema, segments=catalogue, sandbox=sandbox,
                           memberships_of=memberships_of)
    compiler.names_used = names_used  # fresh() counts on from here (names are prefix + number)
    if flat:
        compiler.flat = dict(flat)
    if flat_events:
        compiler.flat_events = dict(flat_events)
    condition = compiler.compile(typed)
    p = compiler.profile
    query = (sa.select(p.c.pk, p.c.external_id).where(p.c.sandbox == sa.literal(sandbox, sa.String), condition)
             .order_by(p.c.pk))
    return query, compiler.names_used


class AnalyticSession:
    """One engine's session over a ``profiles`` and an ``events`` relation; ``members`` runs an
    expression there, ``members_many`` several at once. DuckDBSession below; SparkSession in
    cdp.engine.sql.spark_session."""

    engine: str = ""
    flat: Mapping[str, str] = {}  # key → type of the profiles relation's flat attribute columns
    flat_events: Mapping[str, str] = {}  # key → type of the events relation's flat event-field columns

    def members(self, text_or_tree: str | ast.Node, *, as_of: datetime, sandbox: str, schema: Schema | None = None,
                segments: Mapping[str, str] | None = None,
                memberships_of: Mapping[str, int] | None = None) -> list[tuple[int, str]]:
        query = members_query(text_or_tree, engine=self.engine, as_of=as_of, sandbox=sandbox, schema=schema,
                              segments=segments, memberships_of=memberships_of, flat=self.flat,
                              flat_events=self.flat_events)
        return self.run(query)

    def queries(self, texts_or_trees: Sequence[str | ast.Node], *, as_of: datetime, sandbox: str,
                schema: Schema | None = None, segments: Mapping[str, str] | None = None,
                memberships_of: Mapping[str, int] | None = None) -> list[sa.Select]:
        """The members queries of several expressions over this session's relations, ready to be
        run together by :meth:`members_many` (see :func:`members_queries`)."""
        return members_queries(texts_or_trees, engine=self.engine, as_of=as_of, sandbox=sandbox, schema=schema,
                               segments=segments, memberships_of=memberships_of, flat=self.flat,
                               flat_events=self.flat_events)

    def run(self, query: sa.Select) -> list[tuple[int, str]]:
        return [(int(pk), external_id) for pk, external_id, *_rest in self.fetch(query)]

    def members_many(self, queries: Sequence[sa.Select]) -> list[list[tuple[int, str]]]:
        """Several members queries (of one as_of; from :meth:`queries` or
        :func:`members_queries`, so that their names differ) as one statement: a UNION ALL, each
        branch tagged with its index; each query's members in pk order. A query has a fixed cost
        (parsing, planning, scheduling: seconds on Spark) that a batch pays once per statement."""
        if len(queries) == 1:
            return [self.run(queries[0])]
        branches = [q.order_by(None).add_columns(sa.literal_column(str(i)).label("query"))
                    for i, q in enumerate(queries)]
        found: list[list[tuple[int, str]]] = [[] for _ in queries]
        for pk, external_id, index in self.fetch(sa.union_all(*branches)):
            found[index].append((int(pk), external_id))
        return [sorted(rows) for rows in found]

    def fetch(self, query: sa.Select | sa.CompoundSelect) -> list[tuple]:
        """The rows of a statement."""
        raise NotImplementedError

    def remember(self, segment_pk: int, profile_pks: list[int]) -> None:
        """The members of a segment evaluated in this run: later references read them."""
        self.remember_many([(segment_pk, profile_pks)])

    def remember_many(self, members: Sequence[tuple[int, list[int]]]) -> None:
        """(segment pk, its members' pks) of several segments evaluated in this run, at once."""
        raise NotImplementedError


def _membership_rows(members: Sequence[tuple[int, list[int]]]):
    """The ``memberships`` rows (segment_pk, profile_pk, status) of remembered segments, as Arrow."""
    pa = _pyarrow()
    return pa.table({"segment_pk": pa.array([pk for pk, pks in members for _ in pks], pa.int64()),
                     "profile_pk": pa.array([p for _pk, pks in members for p in pks], pa.int64()),
                     "status": pa.array(["realized"] * sum(len(pks) for _pk, pks in members), pa.string())})


def _python_udfs() -> list[tuple[str, Any, list[str], str]]:
    """(name, function, argument types, result type): what DuckDB runs in the language's Python."""
    from cdp.dsl import runtime
    from cdp.functions.numeric import round_half_away
    from cdp.functions.text import simple_upper

    def null_safe(function, arity: int = 2):  # null in, null out; outside the range: null too (DSL.md §9)
        if arity == 1:
            return lambda a: None if a is None else runtime.checked(function(a))
        return lambda a, b: None if a is None or b is None else runtime.checked(function(a, b))

    return [("pql_mod", null_safe(runtime.modulo), ["DOUBLE", "DOUBLE"], "DOUBLE"),
            ("pql_round_number", null_safe(round_half_away), ["DOUBLE", "BIGINT"], "DOUBLE"),
            ("pql_round_integer", null_safe(round_half_away), ["BIGINT", "BIGINT"], "BIGINT"),
            ("pql_upper", null_safe(simple_upper, 1), ["VARCHAR"], "VARCHAR")]


class DuckDBSession(AnalyticSession):
    """An in-process DuckDB database (memory) with the two relations as views: over Arrow tables
    (:meth:`from_tables`) or Parquet files (:meth:`from_parquet`, what a snapshot gives)."""

    engine = "duckdb"

    def __init__(self, *, threads: int | None = None):
        import duckdb

        self.connection = duckdb.connect(":memory:")
        self.connection.execute("SET TimeZone = 'UTC'")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        for name, function, parameters, result in _python_udfs():
            self.connection.create_function(name, function, parameters, result, null_handling="special",
                                            side_effects=False)
        self.connection.execute("CREATE TABLE memberships (segment_pk BIGINT, profile_pk BIGINT, status VARCHAR)")
        self.dialect = DuckDBDialect()

    def from_tables(self, profiles, events, *, schema: Schema | None = None,
                    flat_columns: bool = True) -> "DuckDBSession":
        """The relations as tables of Arrow ones (as :func:`document_tables` makes them), the
        ``schema``'s scalar attributes and event fields flattened into columns as a snapshot has
        them (``flat_columns=False``: none, every read is a JSON read)."""
        self.connection.register("profiles_arrow", profiles)
        self.connection.register("events_arrow", events)
        schema = schema or luma_schema()
        for relation, event_fields in (("profiles", False), ("events", True)):
            create = lambda select, relation=relation: self.connection.execute(  # noqa: E731
                f"CREATE OR REPLACE TABLE {relation} AS {select}")
            if flat_columns:
                write_flat(self.connection, f"{relation}_arrow", schema, create, event_fields=event_fields)
            else:
                create(f"SELECT * FROM {relation}_arrow")
        self.flat = flat_attributes(self.connection)
        self.flat_events = flat_event_fields(self.connection)
        return self

    def from_sql(self, profiles_sql: str, events_sql: str) -> "DuckDBSession":
        """The relations as views of any SELECT (a snapshot's files merged on read); the flat
        attribute and event-field columns they have are read instead of the JSON."""
        self.connection.execute(f"CREATE OR REPLACE VIEW profiles AS {profiles_sql}")
        self.connection.execute(f"CREATE OR REPLACE VIEW events AS {events_sql}")
        self.flat = flat_attributes(self.connection)
        self.flat_events = flat_event_fields(self.connection)
        return self

    def fetch(self, query: sa.Select | sa.CompoundSelect) -> list[tuple]:
        text, parameters = rendered(query, self.dialect)
        return self.connection.execute(text, parameters).fetchall()

    def remember_many(self, members: Sequence[tuple[int, list[int]]]) -> None:
        self.connection.register("remembered", _membership_rows(members))
        self.connection.execute("INSERT INTO memberships SELECT * FROM remembered")
        self.connection.unregister("remembered")

    def close(self) -> None:
        self.connection.close()


def evaluate_documents(engine: str, documents: Iterable[Mapping | LoadedProfile], expressions: Mapping[str, str], *,
                       as_of: datetime, segments: Mapping[str, str] | None = None, schema: Schema | None = None,
                       sandbox: str = "evaluate", session: AnalyticSession | None = None) -> dict[str, list[str]]:
    """``cdp evaluate --backend duckdb``: the documents as the two relations, each
    expression's ids in document order."""
    profiles, events = document_tables(documents, sandbox=sandbox, schema=schema)
    own = session is None
    if session is None:
        session = open_session(engine)
    try:
        session.from_tables(profiles, events, schema=schema)
        return {name: [external_id for _pk, external_id in
                       session.members(text, as_of=as_of, sandbox=sandbox, schema=schema, segments=segments)]
                for name, text in expressions.items()}
    finally:
        if own:
            session.close()


def open_session(engine: str, *, master: str | None = None) -> AnalyticSession:
    if engine == "duckdb":
        return DuckDBSession()
    if engine == "spark":  # a local one unless a master URL is given (CDP_SPARK_MASTER)
        from cdp.engine.sql.spark_session import SparkSession

        return SparkSession(master=master)
    raise ValueError(f"unknown analytic engine {engine!r}; the engines are {', '.join(ANALYTIC_ENGINES)}")
