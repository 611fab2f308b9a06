"""Dataset CRUD, scoped to a sandbox. Labels are validated by cdp/governance/labels.py and stored
sorted and without duplicates; field labels must name fields of the dataset's kind in the schema
in force (so governance can trace field → dataset → label)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.datasets.models import DatasetCreate, DatasetKind, DatasetRead, DatasetUpdate
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.governance.labels import label_errors, normalize
from cdp.schema import Schema
from cdp.storage.models import datasets

MAX_LABELLED_FIELDS = 2000


def _read(row) -> DatasetRead:
    return DatasetRead(id=row.pk, name=row.name, kind=DatasetKind(row.kind), description=row.description,
                       labels=list(row.labels), field_labels=dict(sorted((row.field_labels or {}).items())),
                       created_at=row.created_at, updated_at=row.updated_at)


def _checked_labels(kind: DatasetKind, labels: list[str], field_labels: dict[str, list[str]],
                    schema: Schema) -> tuple[list[str], dict[str, list[str]]]:
    errors = label_errors(labels)
    fields = schema.profile if kind == DatasetKind.profile else schema.all_event_fields()
    if len(field_labels) > MAX_LABELLED_FIELDS:
        errors.append(f"field_labels: {len(field_labels)} fields; at most {MAX_LABELLED_FIELDS}")
    for path, path_labels in field_labels.items():
        if path not in fields:
            suggestion = Schema.closest(fields, path)
            article = "an" if kind == DatasetKind.event else "a"
            errors.append(f"field_labels: {path[:120]!r} is not {article} {kind.value} field of the schema in force"
                          + (f" (did you mean {', '.join(map(repr, suggestion))}?)" if suggestion else ""))
        errors.extend(f"field_labels[{path[:120]!r}]: {e}" for e in label_errors(path_labels))
    if errors:
        raise Unprocessable(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                            code="invalid_labels", details={"errors": errors})
    return normalize(labels), {path: normalize(values) for path, values in sorted(field_labels.items())}


def _name_taken(connection: sa.Connection, sandbox: str, name: str, exclude_pk: int | None = None) -> bool:
    query = sa.select(datasets.c.pk).where(datasets.c.sandbox == sandbox, datasets.c.name == name)
    if exclude_pk is not None:
        query = query.where(datasets.c.pk != exclude_pk)
    return connection.execute(query).first() is not None


def _exists_error(name: str, sandbox: str) -> Conflict:
    return Conflict(f"a dataset named {name!r} exists in sandbox {sandbox!r}", code="dataset_exists",
                    details={"name": name, "sandbox": sandbox})


def create_dataset(*, connection: sa.Connection, sandbox: str, spec: DatasetCreate, schema: Schema) -> DatasetRead:
    labels, field_labels = _checked_labels(spec.kind, spec.labels, spec.field_labels, schema)
    if _name_taken(connection, sandbox, spec.name):
        raise _exists_error(spec.name, sandbox)
    now = datetime.now(timezone.utc)
    pk = connection.execute(datasets.insert().values(
        sandbox=sandbox, name=spec.name, kind=spec.kind.value, description=spec.description, labels=labels,
        field_labels=field_labels, created_at=now, updated_at=now).returning(datasets.c.pk)).scalar_one()
    return get_dataset(connection=connection, sandbox=sandbox, dataset_id=pk)


def _row(connection: sa.Connection, sandbox: str, dataset_id: int):
    row = connection.execute(sa.select(datasets).where(datasets.c.pk == dataset_id,
                                                       datasets.c.sandbox == sandbox)).first()
    if row is None:
        raise NotFound.resource("dataset", dataset_id, sandbox)
    return row


def get_dataset(*, connection: sa.Connection, sandbox: str, dataset_id: int) -> DatasetRead:
    return _read(_row(connection, sandbox, dataset_id))


def list_datasets(*, connection: sa.Connection, sandbox: str, limit: int, offset: int,
                  kind: DatasetKind | None = None) -> tuple[list[DatasetRead], int]:
    where = [datasets.c.sandbox == sandbox]
    if kind is not None:
        where.append(datasets.c.kind == kind.value)
    total = connection.execute(sa.select(sa.func.count()).select_from(datasets).where(*where)).scalar_one()
    rows = connection.execute(sa.select(datasets).where(*where).order_by(datasets.c.pk).limit(limit).offset(offset))
    return [_read(row) for row in rows], total


def update_dataset(*, connection: sa.Connection, sandbox: str, dataset_id: int, spec: DatasetUpdate,
                   schema: Schema) -> DatasetRead:
    row = _row(connection, sandbox, dataset_id)
    changes = spec.model_dump(exclude_unset=True)
    for name in ("name", "labels", "field_labels"):  # explicit null: not allowed on required fields
        if name in changes and changes[name] is None:
            raise Unprocessable(f"{name} cannot be null", code="validation_error",
                                details={"errors": [{"loc": ["body", name], "message": "may not be null",
                                                     "type": "null"}]})
    kind = DatasetKind(row.kind)
    labels, field_labels = _checked_labels(kind, changes.get("labels", list(row.labels)),
                                           changes.get("field_labels", dict(row.field_labels or {})), schema)
    if "name" in changes and _name_taken(connection, sandbox, changes["name"], exclude_pk=row.pk):
        raise _exists_error(changes["name"], sandbox)
    values = {"labels": labels, "field_labels": field_labels, "updated_at": datetime.now(timezone.utc)}
    for name in ("name", "description"):
        if name in changes:
            values[name] = changes[name]
    connection.execute(datasets.update().where(datasets.c.pk == row.pk).values(**values))
    return get_dataset(connection=connection, sandbox=sandbox, dataset_id=row.pk)


def delete_dataset(*, connection: sa.Connection, sandbox: str, dataset_id: int) -> None:
    row = _row(connection, sandbox, dataset_id)
    connection.execute(datasets.delete().where(datasets.c.pk == row.pk))
