"""The identity graph's keys checked per statement: the foreign keys of ``identities``
(``profile_pk`` → profiles, ON DELETE CASCADE) and ``identity_links`` (``profile_pk`` → profiles and
``a_pk``/``b_pk`` → identities, ON DELETE CASCADE; ``dataset_pk`` → datasets and ``batch_pk`` →
ingestion_batches, ON DELETE SET NULL) become triggers that do the same — on PostgreSQL an
insert's keys once per statement instead of once per row, as 0019 did for ``events``.

Why: PostgreSQL checks a foreign key with one query per inserted row and key (an SPI ``SELECT 1
FROM ONLY … FOR KEY SHARE``). In the identity-graph stream (20,000 records, 4,000 people) that was
21,691 probes of profiles and 13,616 of identities (and one of datasets per link); the same stream
with these constraints dropped spent 83.5 instead of 103.5 µs of PostgreSQL CPU a record, the
links' COPY 11.6 instead of 23.1 µs a record (bench/RESULTS.md, session 13).

What stays the same:

* An insert's keys must exist: the statement's distinct keys of each column are locked ``FOR KEY
  SHARE`` (what a foreign key takes: a concurrent delete of the profile or identity waits for us,
  and a merge's ``FOR UPDATE`` too), in key order, and counted; a missing key raises
  ``foreign_key_violation`` (SQLSTATE 23503, as the constraint did — ingestion takes it for a lost
  race and tries again). An insert waiting for a concurrent delete finds the row gone: 23503.
* An update that changes a key (a merge or split moving identities and links; an upsert of a link
  seen again in another dataset) checks the new key: a row trigger ``WHEN`` the key changed, as the
  constraint checked only changed keys. (A statement trigger with transition tables would capture
  every row of every update, the identities' ``last_seen`` touch of each request included.)
* Deletes cascade once per statement: a profile's identities and links, an identity's links (by
  either end); a dataset's or batch's links keep no dataset / batch.

SQLite checks a foreign key with an index probe per row (cheap): there the constraints become row
triggers doing what they did (``BEFORE INSERT/UPDATE`` raising "FOREIGN KEY constraint failed",
``AFTER DELETE`` cascading), so that both databases hold the schema of the models
(tests/test_sql_engine.py compares them).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 13:00:00
"""

from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

# (table, column, referenced table, ON DELETE) — what the constraints were
_KEYS = (
    ("identities", "profile_pk", "profiles", "CASCADE"),
    ("identity_links", "profile_pk", "profiles", "CASCADE"),
    ("identity_links", "a_pk", "identities", "CASCADE"),
    ("identity_links", "b_pk", "identities", "CASCADE"),
    ("identity_links", "dataset_pk", "datasets", "SET NULL"),
    ("identity_links", "batch_pk", "ingestion_batches", "SET NULL"),
)
_TABLES = ("identity_links", "identities")  # rebuilt on SQLite in this order: links reference identities


def _constraint(table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}"


def _missing(table: str, column: str) -> str:
    return (f"RAISE foreign_key_violation USING MESSAGE = 'a row''s {column} of {table} is not a key of its table', "
            f"TABLE = '{table}', COLUMN = '{column}'")


def _pg_insert_check(table: str) -> str:
    """The statement's distinct keys of each column: locked FOR KEY SHARE in key order, all found."""
    body = []
    for owner, column, parent, _ in _KEYS:
        if owner != table:
            continue
        body.append(f"""
    wanted := ARRAY(SELECT DISTINCT {column} FROM new_rows WHERE {column} IS NOT NULL ORDER BY 1);
    IF cardinality(wanted) = 1 THEN
        PERFORM 1 FROM {parent} WHERE pk = wanted[1] FOR KEY SHARE;
    ELSIF cardinality(wanted) > 1 THEN
        PERFORM 1 FROM {parent} WHERE pk = ANY(wanted) ORDER BY pk FOR KEY SHARE;
    END IF;
    GET DIAGNOSTICS found = ROW_COUNT;
    IF cardinality(wanted) > 0 AND found <> cardinality(wanted) THEN
        {_missing(table, column)};
    END IF;""")
    return "".join(body)


def _pg_update_check(table: str, column: str, parent: str) -> str:
    return f"""
    PERFORM 1 FROM {parent} WHERE pk = NEW.{column} FOR KEY SHARE;
    IF NOT FOUND THEN
        {_missing(table, column)};
    END IF;"""


# the deletes the constraints cascaded, once per statement (name, table deleted from, statements)
_PG_CASCADES = (
    ("identities_of_deleted_profiles", "profiles",
     ("DELETE FROM identities WHERE profile_pk = ANY(ARRAY(SELECT pk FROM old_rows))",
      "DELETE FROM identity_links WHERE profile_pk = ANY(ARRAY(SELECT pk FROM old_rows))")),
    ("links_of_deleted_identities", "identities",
     ("DELETE FROM identity_links WHERE a_pk = ANY(ARRAY(SELECT pk FROM old_rows))",
      "DELETE FROM identity_links WHERE b_pk = ANY(ARRAY(SELECT pk FROM old_rows))")),
    ("links_of_deleted_datasets", "datasets",
     ("UPDATE identity_links SET dataset_pk = NULL WHERE dataset_pk = ANY(ARRAY(SELECT pk FROM old_rows))",)),
    ("links_of_deleted_batches", "ingestion_batches",
     ("UPDATE identity_links SET batch_pk = NULL WHERE batch_pk = ANY(ARRAY(SELECT pk FROM old_rows))",)),
)


def _pg_function(name: str, body: str, declare: str = "", returns: str = "NULL") -> None:
    op.execute(f"CREATE OR REPLACE FUNCTION cdp_{name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
               f"{declare}BEGIN{body}\n    RETURN {returns};\nEND $$")


def _sqlite_found(column: str, parent: str, row: str = "NEW") -> str:
    return f"NOT EXISTS (SELECT 1 FROM {parent} WHERE pk = {row}.{column})"


def _sqlite_triggers() -> dict[str, str]:
    triggers = {}
    for table in _TABLES:
        keys = [(column, parent) for owner, column, parent, _ in _KEYS if owner == table]
        missing = " OR ".join(f"({_sqlite_found(column, parent)})" if column in ("profile_pk", "a_pk", "b_pk")
                              else f"(NEW.{column} IS NOT NULL AND {_sqlite_found(column, parent)})"
                              for column, parent in keys)
        check = f"SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed') WHERE {missing};"
        triggers[f"{table}_keys_insert"] = f"BEFORE INSERT ON {table} BEGIN {check} END"
        columns = ", ".join(column for column, _ in keys)
        # a key the update leaves as it was is not checked again (a link seen again: its upsert
        # sets the same profile and dataset), as PostgreSQL's constraint did not
        changed = " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column, _ in keys)
        triggers[f"{table}_keys_update"] = f"BEFORE UPDATE OF {columns} ON {table} WHEN {changed} BEGIN {check} END"
    triggers.update({
        "identities_of_deleted_profiles": ("AFTER DELETE ON profiles BEGIN "
                                           "DELETE FROM identities WHERE profile_pk = OLD.pk; "
                                           "DELETE FROM identity_links WHERE profile_pk = OLD.pk; END"),
        "links_of_deleted_identities": ("AFTER DELETE ON identities BEGIN "
                                        "DELETE FROM identity_links WHERE a_pk = OLD.pk; "
                                        "DELETE FROM identity_links WHERE b_pk = OLD.pk; END"),
        "links_of_deleted_datasets": ("AFTER DELETE ON datasets BEGIN "
                                      "UPDATE identity_links SET dataset_pk = NULL WHERE dataset_pk = OLD.pk; END"),
        "links_of_deleted_batches": ("AFTER DELETE ON ingestion_batches BEGIN "
                                     "UPDATE identity_links SET batch_pk = NULL WHERE batch_pk = OLD.pk; END"),
    })
    return triggers


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            _pg_function(f"{table}_keys_insert", _pg_insert_check(table), "DECLARE wanted bigint[]; found bigint;\n")
            op.execute(f"CREATE TRIGGER {table}_keys_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION cdp_{table}_keys_insert()")
        for table, column, parent, _ in _KEYS:
            name = f"{table}_{column}_update"
            _pg_function(name, _pg_update_check(table, column, parent))
            op.execute(f"CREATE TRIGGER {name} AFTER UPDATE OF {column} ON {table} FOR EACH ROW "
                       f"WHEN (NEW.{column} IS NOT NULL AND NEW.{column} IS DISTINCT FROM OLD.{column}) "
                       f"EXECUTE FUNCTION cdp_{name}()")
        for name, table, statements in _PG_CASCADES:
            _pg_function(name, "".join(f"\n    {statement};" for statement in statements))
            op.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION cdp_{name}()")
        for table, column, parent, _ in _KEYS:
            op.drop_constraint(_constraint(table, column, parent), table, type_="foreignkey")
        return
    for table in _TABLES:
        with op.batch_alter_table(table, recreate="always") as batch:
            for owner, column, parent, _ in _KEYS:
                if owner == table:
                    batch.drop_constraint(_constraint(table, column, parent), type_="foreignkey")
    for name, body in _sqlite_triggers().items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table, _ in _PG_CASCADES:
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION cdp_{name}()")
        for table, column, _, _ in _KEYS:
            op.execute(f"DROP TRIGGER {table}_{column}_update ON {table}")
            op.execute(f"DROP FUNCTION cdp_{table}_{column}_update()")
        for table in _TABLES:
            op.execute(f"DROP TRIGGER {table}_keys_insert ON {table}")
            op.execute(f"DROP FUNCTION cdp_{table}_keys_insert()")
        for table, column, parent, ondelete in reversed(_KEYS):
            op.create_foreign_key(_constraint(table, column, parent), table, parent, [column], ["pk"],
                                  ondelete=ondelete)
        return
    for name in _sqlite_triggers():
        op.execute(f"DROP TRIGGER {name}")
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, recreate="always") as batch:
            for owner, column, parent, ondelete in _KEYS:
                if owner == table:
                    batch.create_foreign_key(_constraint(table, column, parent), parent, [column], ["pk"],
                                             ondelete=ondelete)
