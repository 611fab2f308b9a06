"""Foreign keys as triggers: what a table's foreign-key constraints did, done by triggers — on
PostgreSQL an insert's keys checked once per statement instead of once per row and key.

PostgreSQL checks a foreign key with one query per inserted row and key (an SPI ``SELECT 1 FROM
ONLY … FOR KEY SHARE``): a set-wise insert of a million rows runs millions of them, mostly on the
same few parent rows. Here (migrations 0021 and 0022; 0019 did the same for ``events`` by hand):

* an insert's keys must exist: the statement's distinct keys of each column are locked ``FOR KEY
  SHARE`` (what a foreign key takes: a concurrent delete of the parent waits for us), in key order,
  and counted; a missing key raises ``foreign_key_violation`` (SQLSTATE 23503, as the constraint
  did — ingestion takes it for a lost race and tries again);
* an update that changes a key checks the new key: a row trigger ``WHEN`` the key changed, as the
  constraint checked only changed keys (a statement trigger with transition tables would capture
  every row of every update);
* deletes of a parent cascade (``CASCADE``: the rows deleted; ``SET NULL``: the key cleared) once
  per statement.

SQLite checks a foreign key with an index probe per row (cheap): there the constraints become row
triggers doing what they did (``BEFORE INSERT/UPDATE`` raising "FOREIGN KEY constraint failed",
``AFTER DELETE`` cascading), so that both databases hold the schema of the models
(tests/test_sql_engine.py compares them).

A key is ``(table, column, parent table, ON DELETE)``; a ``SET NULL`` key's column is nullable, a
``CASCADE`` key's is not. A cascade is ``(trigger name, parent table, [(table, column, ON
DELETE), …])``, its statements in that order.
"""

from __future__ import annotations

from alembic import op

Key = tuple[str, str, str, str]
Cascade = tuple[str, str, tuple[tuple[str, str, str], ...]]


def constraint_name(table: str, column: str, parent: str) -> str:
    """The constraint's name under the models' naming convention."""
    return f"fk_{table}_{column}_{parent}"


def _missing(table: str, column: str) -> str:
    return (f"RAISE foreign_key_violation USING MESSAGE = 'a row''s {column} of {table} is not a key of its table', "
            f"TABLE = '{table}', COLUMN = '{column}'")


def _pg_insert_check(keys: tuple[Key, ...], table: str) -> str:
    """The statement's distinct keys of each column: locked FOR KEY SHARE in key order, all found."""
    body = []
    for owner, column, parent, _ in keys:
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


def _cascade_statements(actions: tuple[tuple[str, str, str], ...], deleted: str) -> list[str]:
    """The statements of one cascade; ``deleted``: the deleted parents' keys (an SQL expression)."""
    return [f"DELETE FROM {table} WHERE {column} = {deleted}" if on_delete == "CASCADE"
            else f"UPDATE {table} SET {column} = NULL WHERE {column} = {deleted}"
            for table, column, on_delete in actions]


def _pg_function(name: str, body: str, declare: str = "") -> None:
    op.execute(f"CREATE OR REPLACE FUNCTION cdp_{name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
               f"{declare}BEGIN{body}\n    RETURN NULL;\nEND $$")


def _sqlite_triggers(keys: tuple[Key, ...], tables: tuple[str, ...], cascades: tuple[Cascade, ...]) -> dict[str, str]:
    triggers = {}
    for table in tables:
        owned = [(column, parent, on_delete) for owner, column, parent, on_delete in keys if owner == table]
        missing = " OR ".join(
            f"(NOT EXISTS (SELECT 1 FROM {parent} WHERE pk = NEW.{column}))" if on_delete == "CASCADE"
            else f"(NEW.{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {parent} WHERE pk = NEW.{column}))"
            for column, parent, on_delete in owned)
        check = f"SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed') WHERE {missing};"
        triggers[f"{table}_keys_insert"] = f"BEFORE INSERT ON {table} BEGIN {check} END"
        columns = ", ".join(column for column, _, _ in owned)
        # a key the update leaves as it was is not checked again, as PostgreSQL's constraint did not
        changed = " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column, _, _ in owned)
        triggers[f"{table}_keys_update"] = f"BEFORE UPDATE OF {columns} ON {table} WHEN {changed} BEGIN {check} END"
    for name, parent, actions in cascades:
        statements = " ".join(f"{statement};" for statement in _cascade_statements(actions, "OLD.pk"))
        triggers[name] = f"AFTER DELETE ON {parent} BEGIN {statements} END"
    return triggers


def upgrade_keys(keys: tuple[Key, ...], tables: tuple[str, ...], cascades: tuple[Cascade, ...]) -> None:
    """Replace the constraints ``keys`` of ``tables`` (on SQLite rebuilt in this order: a table
    referencing another comes first) by triggers, ``cascades`` doing their deletes."""
    if op.get_bind().dialect.name == "postgresql":
        for table in tables:
            _pg_function(f"{table}_keys_insert", _pg_insert_check(keys, table),
                         "DECLARE wanted bigint[]; found bigint;\n")
            op.execute(f"CREATE TRIGGER {table}_keys_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION cdp_{table}_keys_insert()")
        for table, column, parent, _ in keys:
            name = f"{table}_{column}_update"
            _pg_function(name, _pg_update_check(table, column, parent))
            op.execute(f"CREATE TRIGGER {name} AFTER UPDATE OF {column} ON {table} FOR EACH ROW "
                       f"WHEN (NEW.{column} IS NOT NULL AND NEW.{column} IS DISTINCT FROM OLD.{column}) "
                       f"EXECUTE FUNCTION cdp_{name}()")
        for name, parent, actions in cascades:
            statements = _cascade_statements(actions, "ANY(ARRAY(SELECT pk FROM old_rows))")
            _pg_function(name, "".join(f"\n    {statement};" for statement in statements))
            op.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {parent} REFERENCING OLD TABLE AS old_rows "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION cdp_{name}()")
        for table, column, parent, _ in keys:
            op.drop_constraint(constraint_name(table, column, parent), table, type_="foreignkey")
        return
    for table in tables:
        with op.batch_alter_table(table, recreate="always") as batch:
            for owner, column, parent, _ in keys:
                if owner == table:
                    batch.drop_constraint(constraint_name(table, column, parent), type_="foreignkey")
    for name, body in _sqlite_triggers(keys, tables, cascades).items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade_keys(keys: tuple[Key, ...], tables: tuple[str, ...], cascades: tuple[Cascade, ...]) -> None:
    """The constraints back, the triggers gone (:func:`upgrade_keys` undone)."""
    if op.get_bind().dialect.name == "postgresql":
        for name, parent, _ in cascades:
            op.execute(f"DROP TRIGGER {name} ON {parent}")
            op.execute(f"DROP FUNCTION cdp_{name}()")
        for table, column, _, _ in keys:
            op.execute(f"DROP TRIGGER {table}_{column}_update ON {table}")
            op.execute(f"DROP FUNCTION cdp_{table}_{column}_update()")
        for table in tables:
            op.execute(f"DROP TRIGGER {table}_keys_insert ON {table}")
            op.execute(f"DROP FUNCTION cdp_{table}_keys_insert()")
        for table, column, parent, on_delete in reversed(keys):
            op.create_foreign_key(constraint_name(table, column, parent), table, parent, [column], ["pk"],
                                  ondelete=on_delete)
        return
    for name in _sqlite_triggers(keys, tables, cascades):
        op.execute(f"DROP TRIGGER {name}")
    for table in reversed(tables):
        with op.batch_alter_table(table, recreate="always") as batch:
            for owner, column, parent, on_delete in keys:
                if owner == table:
                    batch.create_foreign_key(constraint_name(table, column, parent), parent, [column], ["pk"],
                                             ondelete=on_delete)
