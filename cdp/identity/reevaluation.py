"""Applying the linking rules to every graph of a sandbox at once (after the rules changed).

New rules apply to a graph from its next link on. The re-evaluation (a job: KIND_NAME, run by
cdp/ingestion/reevaluation.py, which also re-evaluates the memberships of the profiles it changed)
takes every link of the sandbox, the removed ones too, groups the profiles they connect, and for
each group whose profiles or removed links differ from what the rules give now, regroups it
(cdp/identity/split.py): links removed under the old rules may come back, profiles split or merge.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from cdp.identity.graph import IdentityGraph
from cdp.identity.namespaces import sandbox_namespaces
from cdp.identity.rules import Link, evaluate
from cdp.identity.settings import get_identity_settings
from cdp.identity.split import regroup
from cdp.storage.models import identities, identity_links, profiles

KIND_NAME = "identity.reevaluate"


def reevaluate_sandbox(connection: sa.Connection, *, sandbox: str, now: datetime,
                       checkpoint: Callable[[], None] = lambda: None) -> tuple[int, set[int]]:
    """(groups regrouped, the profiles they changed). On PostgreSQL the sandbox's profiles of a
    changed group are locked while it is written."""
    settings = get_identity_settings(connection=connection, sandbox=sandbox)
    namespaces = dict(sandbox_namespaces(connection=connection, sandbox=sandbox))
    graph = IdentityGraph(connection, sandbox=sandbox, namespaces=namespaces, settings=settings)
    rows = connection.execute(sa.select(identities.c.pk, identities.c.namespace, identities.c.value,
                                        identities.c.profile_pk).where(identities.c.sandbox == sandbox)).all()
    pair_of = {row.pk: (row.namespace, row.value) for row in rows}
    profile_of = {row.pk: row.profile_pk for row in rows}
    links = connection.execute(sa.select(identity_links.c.a_pk, identity_links.c.b_pk, identity_links.c.last_seen,
                                         identity_links.c.seen_order, identity_links.c.removed_at,
                                         identity_links.c.profile_pk).where(identity_links.c.sandbox == sandbox)).all()
    parent: dict[int, int] = {}

    def find(pk: int) -> int:
        parent.setdefault(pk, pk)
        while parent[pk] != pk:
            parent[pk] = parent[parent[pk]]
            pk = parent[pk]
        return pk

    for link in links:
        for end in (link.a_pk, link.b_pk):
            parent[find(profile_of[end])] = find(link.profile_pk)
        parent[find(profile_of[link.a_pk])] = find(profile_of[link.b_pk])
    groups: dict[int, set[int]] = {}
    for pk in set(profile_of.values()):
        groups.setdefault(find(pk), set()).add(pk)
    links_of: dict[int, list] = {}
    for link in links:
        links_of.setdefault(find(profile_of[link.a_pk]), []).append(link)
    regrouped, changed = 0, set()
    for root, members in sorted(groups.items()):
        checkpoint()
        group_links = links_of.get(root, [])
        nodes = [pair_of[pk] for pk, owner in profile_of.items() if owner in members]
        outcome = evaluate(nodes, [Link.between(pair_of[l.a_pk], pair_of[l.b_pk], (l.last_seen, l.seen_order),
                                                (l.a_pk, l.b_pk)) for l in group_links], graph.rules)
        current: dict[int, set] = {}
        for pk, owner in profile_of.items():
            if owner in members:
                current.setdefault(owner, set()).add(pair_of[pk])
        same_profiles = sorted(map(sorted, current.values())) == sorted(map(sorted, outcome.components))
        removed_before = {(l.a_pk, l.b_pk) for l in group_links if l.removed_at is not None}
        removed_after = {link.key for link in outcome.removed}
        if same_profiles and removed_before == removed_after:
            continue
        owned = sorted(members)
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(profiles.c.pk).where(profiles.c.pk.in_(owned)).order_by(profiles.c.pk)
                               .with_for_update())
        graph.regrouped = set()
        regroup(graph, owned, records=[], now=now, include_removed=True)
        changed |= graph.regrouped
        regrouped += 1
    return regrouped, changed
