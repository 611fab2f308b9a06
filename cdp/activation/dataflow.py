"""``GET /v1/dataflow``: datasets → segments → activations → destinations as one graph, with the
labels each node carries and the policy status of each activation (for the UI).

A dataset feeds a segment when it supplies a field the segment reads (through the segments it
references): attribute provenance for profile attributes, event datasets that hold events for
event fields (cdp/governance/lineage.py). An activation's labels are those of the fields in play
— read and exported — which is what its policies were evaluated on.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.activation.models import DataFlow, FlowEdge, FlowNode
from cdp.dsl import PqlError, check
from cdp.governance.lineage import datasets_supplying, fields_in_play, label_lineage
from cdp.schema_registry.service import get_schema
from cdp.storage.models import activation_members, activations, datasets, destinations, segments


def _dataset_labels(row) -> list[str]:
    return sorted(set(row.labels) | {label for values in (row.field_labels or {}).values() for label in values})


def dataflow(*, connection: sa.Connection, sandbox: str, now: datetime | None = None) -> DataFlow:
    now = now or datetime.now(timezone.utc)
    schema = get_schema(connection=connection, sandbox=sandbox)
    nodes: list[FlowNode] = []
    edges: list[FlowEdge] = []
    dataset_rows = connection.execute(sa.select(datasets).where(datasets.c.sandbox == sandbox)
                                      .order_by(datasets.c.pk)).all()
    dataset_labels = {row.pk: _dataset_labels(row) for row in dataset_rows}
    for row in dataset_rows:
        nodes.append(FlowNode(id=f"dataset:{row.pk}", kind="dataset", name=row.name, labels=dataset_labels[row.pk],
                              status=row.kind, policy=None, details={"kind": row.kind}))
    segment_rows = connection.execute(sa.select(segments.c.pk, segments.c.key, segments.c.name, segments.c.expression,
                                                segments.c.status).where(segments.c.sandbox == sandbox)
                                      .order_by(segments.c.key)).all()
    catalogue = {row.key: row.expression for row in segment_rows}
    for row in segment_rows:
        try:
            uses = fields_in_play(tree=check(row.expression, schema), catalogue=catalogue, schema=schema)
        except PqlError:
            uses = []
        lineage = label_lineage(connection=connection, sandbox=sandbox, uses=uses)
        carried: dict[int, set[str]] = {pk: set() for pk in datasets_supplying(connection=connection, sandbox=sandbox,
                                                                               uses=uses)}
        for source in lineage:
            carried.setdefault(source.dataset_id, set()).add(source.label)
        nodes.append(FlowNode(id=f"segment:{row.key}", kind="segment", name=row.name,
                              labels=sorted({s.label for s in lineage}), status=row.status, policy=None))
        edges += [FlowEdge(source=f"dataset:{pk}", target=f"segment:{row.key}", labels=sorted(labels))
                  for pk, labels in sorted(carried.items())]
    rows = connection.execute(
        sa.select(activations, segments.c.key.label("segment_key"))
        .join(segments, segments.c.pk == activations.c.segment_pk)
        .where(activations.c.sandbox == sandbox).order_by(activations.c.pk)).all()
    for row in rows:
        try:
            uses = fields_in_play(tree=check(catalogue[row.segment_key], schema), catalogue=catalogue, schema=schema,
                                  attributes=[p for p in row.attributes if p in schema.profile]
                                  + sorted(k for p in row.attributes if p in schema.profile_objects
                                           for k in schema.profile if k.startswith(p + ".")))
        except PqlError:
            uses = []
        labels = sorted({s.label for s in label_lineage(connection=connection, sandbox=sandbox, uses=uses)})
        policy = "violation" if row.status == "paused" and row.violations else "allowed"
        status = "ended" if row.status == "active" and now >= row.end_at else row.status
        exported = connection.execute(sa.select(sa.func.count()).select_from(activation_members).where(
            activation_members.c.activation_pk == row.pk, activation_members.c.state == "exported")).scalar_one()
        nodes.append(FlowNode(id=f"activation:{row.pk}", kind="activation", name=f"{row.segment_key} → {row.destination_pk}",
                              labels=labels, status=status, policy=policy,
                              details={"paused_reason": row.paused_reason, "members_exported": exported,
                                       "attributes": row.attributes}))
        edges.append(FlowEdge(source=f"segment:{row.segment_key}", target=f"activation:{row.pk}", labels=labels,
                              policy=policy))
        edges.append(FlowEdge(source=f"activation:{row.pk}", target=f"destination:{row.destination_pk}",
                              labels=labels, policy=policy))
    for row in connection.execute(sa.select(destinations).where(destinations.c.sandbox == sandbox)
                                  .order_by(destinations.c.pk)).all():
        nodes.append(FlowNode(id=f"destination:{row.pk}", kind="destination", name=row.name, labels=[],
                              status=row.type, policy=None,
                              details={"marketing_actions": row.marketing_actions, "consent": row.consent}))
    return DataFlow(nodes=nodes, edges=edges)
