"""Resolution by the linking rules: links removed, profiles split (and merged) to match.

When records would put two identities of a unique namespace in one graph, the profiles that own
their identities are taken as a whole — their identities, their links, the records' new links —
and the rule of cdp/identity/rules.py decides which links stay. The profiles become the connected
components of the kept links:

* each component goes to the oldest of the profiles whose **anchor** (highest-priority identity,
  then namespace and value) it holds; the others of those profiles merge into it (their ids keep
  resolving, as after any merge); a component holding no anchor is a new profile (split off);
* every identity moves to its component's profile; every event and attribute source to the
  profile of the highest-priority identity of the record that brought it (one whose identities
  are all gone stays with its profile's anchor); graph-limit reports follow their profile;
* attributes are recomputed by the merge policy from the sources each profile now holds (values
  loaded without a dataset stay with the profile that had them, as on a merge);
* links keep their state (a removed one says why and when), and every profile that changed is
  handed back (:attr:`IdentityGraph.regrouped`) so that its memberships are re-evaluated.

:func:`regroup` does the writing; ingestion (records in conflict) and the re-evaluation job
(cdp/identity/reevaluation.py) use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cdp.identity.attributes import winner
from cdp.identity.rules import Identity, Link, Outcome, apply_records, record_links
from cdp.storage.bulk import set_profile_attributes
from cdp.storage.models import (attribute_sources, events, identities, identity_links, identity_removals, memberships,
                                profile_merges, profiles)

if TYPE_CHECKING:
    from cdp.identity.graph import IdentityGraph, Resolution

_CHUNK = 400
ia = identities.alias("ia")
ib = identities.alias("ib")


@dataclass
class Regrouped:
    outcome: Outcome
    destination: dict[int, int]  # component → profile key
    created: list[int] = field(default_factory=list)  # profiles split off
    merged: dict[int, str] = field(default_factory=dict)  # merged-away key → its id ("" when made just now)
    newly_removed: list[Link] = field(default_factory=list)


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def resolve_by_rules(graph: IdentityGraph, records: list[list[Identity]], now: datetime,
                     indices: list[int]) -> list[Resolution]:
    """Resolve records whose graphs conflict (see the module docstring)."""
    from cdp.identity.graph import Resolution, ResolutionConflict

    connection = graph.connection
    pairs = list(dict.fromkeys(pair for record in records for pair in record))
    owner: dict[Identity, int] = {}
    for chunk in _chunks(pairs):
        owner.update(graph.owners(chunk))
    owned = sorted(set(owner.values()))
    if owned and graph.dialect == "postgresql":
        locked = connection.execute(sa.select(profiles.c.pk).where(profiles.c.pk.in_(owned))
                                    .order_by(profiles.c.pk).with_for_update()).scalars().all()
        again: dict[Identity, int] = {}
        for chunk in _chunks(pairs):
            again.update(graph.owners(chunk))
        if len(locked) != len(owned) or again != owner:
            raise ResolutionConflict("profiles changed under the records")
    fresh = [(record, index) for record, index in zip(records, indices)]
    result = regroup(graph, owned, records=fresh, now=now, include_removed=False)
    outcome, destination = result.outcome, result.destination
    profile_of = {pair: destination[outcome.component_of[pair]] for pair in pairs}
    external = graph._external_ids(sorted(set(profile_of.values())))
    resolutions = [Resolution(profile_of[graph.rules.top(record)], external[profile_of[graph.rules.top(record)]])
                   for record in records]
    # the last record of the group says what the rules did (the newest link is its)
    last = resolutions[-1]
    last.unlinked = [f"{link.a[0]}:{link.a[1]} – {link.b[0]}:{link.b[1]}" for link in result.newly_removed]
    last.split = list(graph._external_ids(result.created).values())
    last.merged = [merged_id for merged_id in result.merged.values() if merged_id]
    return resolutions


def regroup(graph: IdentityGraph, owned: list[int], *, records: list[tuple[list[Identity], int]], now: datetime,
            include_removed: bool) -> Regrouped:
    """Apply the linking rules to the profiles ``owned`` (locked by the caller on PostgreSQL) and
    the ``records`` (identities, index in the write) being linked to them; write the outcome."""
    from cdp.identity.graph import ResolutionConflict
    from cdp.storage.memberships import exit_all

    connection, rules, sandbox = graph.connection, graph.rules, graph.sandbox
    stored_identities = []
    for chunk in _chunks(owned):
        stored_identities += connection.execute(sa.select(
            identities.c.pk, identities.c.namespace, identities.c.value, identities.c.profile_pk).where(
            identities.c.profile_pk.in_(chunk))).all()
    held: dict[Identity, Any] = {(row.namespace, row.value): row for row in stored_identities}
    stored_links = []
    for chunk in _chunks(owned):
        stored_links += connection.execute(sa.select(
            identity_links.c.pk, identity_links.c.profile_pk, identity_links.c.last_seen, identity_links.c.seen_order,
            identity_links.c.removed_at, identity_links.c.removed_reason, ia.c.namespace.label("a_ns"),
            ia.c.value.label("a_value"), ib.c.namespace.label("b_ns"), ib.c.value.label("b_value"))
            .join(ia, ia.c.pk == identity_links.c.a_pk).join(ib, ib.c.pk == identity_links.c.b_pk)
            .where(identity_links.c.profile_pk.in_(chunk))).all()
    candidates: dict[tuple[Identity, Identity], Link] = {}
    for row in stored_links:
        inside = (row.a_ns, row.a_value) in held and (row.b_ns, row.b_value) in held
        if inside and (row.removed_at is None or include_removed):
            link = Link.between((row.a_ns, row.a_value), (row.b_ns, row.b_value), (row.last_seen, row.seen_order),
                                row.pk)
            candidates[(link.a, link.b)] = link
    nodes = list(held) + [pair for identities_, _ in records for pair in identities_]
    # one record after the other, as ingestion promises
    outcome = apply_records([(identities_, (now, index)) for identities_, index in records], rules,
                            links=candidates.values(), nodes=nodes)
    component_of = outcome.component_of

    # which profile each component becomes
    by_profile: dict[int, list[Identity]] = {}
    for pair, row in held.items():
        by_profile.setdefault(row.profile_pk, []).append(pair)
    anchors = {pk: rules.top(pairs) for pk, pairs in by_profile.items()}
    claims: dict[int, list[int]] = {}
    for pk, anchor in anchors.items():
        claims.setdefault(component_of[anchor], []).append(pk)
    destination: dict[int, int] = {}
    unclaimed = [index for index in range(len(outcome.components)) if index not in claims]
    created = graph._create_profiles(len(unclaimed), now)
    destination.update(zip(unclaimed, created))
    merged: dict[int, int] = {}
    for index, pks in claims.items():
        survivor, *others = sorted(pks)
        destination[index] = survivor
        merged.update({other: survivor for other in others})
    target_of_profile = {pk: destination[component_of[anchor]] for pk, anchor in anchors.items()}
    for pk in owned:
        target_of_profile.setdefault(pk, pk)  # a profile without identities stays as it is

    def target(identities_: Any, profile_pk: int) -> int:
        present = [tuple(pair) for pair in identities_ or () if tuple(pair) in component_of]
        if present:
            return destination[component_of[rules.top(present)]]
        return target_of_profile[profile_pk]

    # identities
    moves: dict[int, list[int]] = {}
    for pair, row in held.items():
        to = destination[component_of[pair]]
        if to != row.profile_pk:
            moves.setdefault(to, []).append(row.pk)
    for to, pks in sorted(moves.items()):
        for chunk in _chunks(sorted(pks)):
            connection.execute(identities.update().where(identities.c.pk.in_(chunk)).values(profile_pk=to))
    new_pairs = [pair for pair in dict.fromkeys(nodes) if pair not in held]
    if new_pairs:
        rows = sorted(({"sandbox": sandbox, "profile_pk": destination[component_of[pair]], "namespace": pair[0],
                        "value": pair[1], "first_seen": now, "last_seen": now} for pair in new_pairs),
                      key=lambda row: (row["namespace"], row["value"]))
        if graph.claim(rows) != len(rows):
            raise ResolutionConflict("another writer claimed an identity of the records")
    seen_again = [pair for identities_, _ in records for pair in identities_ if pair in held]
    for chunk in _chunks(list(dict.fromkeys(seen_again))):
        graph._touch(chunk, now)

    # links: stored ones take their new profile and state, the records' ones are written as seen now
    record_keys = {(link.a, link.b) for identities_, index in records for link in record_links(identities_, (now, index))}
    removed_now = {(link.a, link.b): link.reason for link in outcome.removed}
    kept_before = {row.pk for row in stored_links if row.removed_at is None}
    newly_removed = [link for link in outcome.removed if (link.a, link.b) in record_keys or link.key in kept_before]
    kept_keys = {(link.a, link.b) for link in outcome.kept}
    updates = []
    for row in stored_links:
        key = ((row.a_ns, row.a_value), (row.b_ns, row.b_value))
        key = key if key[0] <= key[1] else (key[1], key[0])
        if key in record_keys:
            continue
        a = key[0]
        profile_pk = destination[component_of[a]] if a in component_of else target_of_profile.get(row.profile_pk,
                                                                                                 row.profile_pk)
        if key in removed_now and row.removed_at is None:
            removed_at, reason = now, removed_now[key]
        elif include_removed and key in kept_keys:
            removed_at, reason = None, None
        else:
            removed_at, reason = row.removed_at, row.removed_reason
        if (profile_pk, removed_at, reason) != (row.profile_pk, row.removed_at, row.removed_reason):
            updates.append({"link_pk": row.pk, "profile_pk": profile_pk, "removed_at": removed_at,
                            "removed_reason": reason})
    if updates:
        connection.execute(identity_links.update().where(identity_links.c.pk == sa.bindparam("link_pk")), updates)
    if records:
        pair_keys = graph.pks_of(list(dict.fromkeys(pair for identities_, _ in records for pair in identities_)))
        removed_by_keys = {}
        for (a, b), reason in removed_now.items():
            if a in pair_keys and b in pair_keys:
                removed_by_keys[tuple(sorted((pair_keys[a], pair_keys[b])))] = reason
        graph._write_links([identities_ for identities_, _ in records], [index for _, index in records],
                           [0] * len(records), now, removed=removed_by_keys,
                           profile_of_pair={pair: destination[component_of[pair]] for pair in pair_keys})

    # events and attribute sources follow the identities of their records
    for chunk in _chunks(owned):
        event_moves: dict[int, list[int]] = {}
        for row in connection.execute(sa.select(events.c.pk, events.c.profile_pk, events.c.identities)
                                      .where(events.c.profile_pk.in_(chunk))):
            to = target(row.identities, row.profile_pk)
            if to != row.profile_pk:
                event_moves.setdefault(to, []).append(row.pk)
        for to, pks in sorted(event_moves.items()):
            for part in _chunks(sorted(pks)):
                connection.execute(events.update().where(events.c.pk.in_(part)).values(profile_pk=to))
    sources = []
    for chunk in _chunks(owned):
        sources += connection.execute(sa.select(attribute_sources).where(attribute_sources.c.profile_pk.in_(chunk))).all()
    sourced_paths: dict[int, set[str]] = {}
    for row in sources:
        sourced_paths.setdefault(row.profile_pk, set()).add(row.path)
    best: dict[tuple[int, str, int], Any] = {}
    for row in sources:
        key = (target(row.identities, row.profile_pk), row.path, row.dataset_pk)
        if key not in best or (row.observed_at, row.pk) > (best[key].observed_at, best[key].pk):
            best[key] = row
    keep = {row.pk: key[0] for key, row in best.items()}
    leaving = [row for row in sources if row.pk not in keep or keep[row.pk] != row.profile_pk]
    for chunk in _chunks(sorted(row.pk for row in leaving)):
        connection.execute(attribute_sources.delete().where(attribute_sources.c.pk.in_(chunk)))
    arriving = [{**{c: getattr(row, c) for c in row._fields if c != "pk"}, "profile_pk": keep[row.pk]}
                for row in leaving if row.pk in keep]
    if arriving:
        connection.execute(attribute_sources.insert(), arriving)

    # attributes: the policy over each profile's sources now; values loaded without a dataset stay
    attributes_of = {row.pk: dict(row.attributes or {}) for chunk in _chunks(owned) for row in connection.execute(
        sa.select(profiles.c.pk, profiles.c.attributes).where(profiles.c.pk.in_(chunk)))}
    targets = sorted(set(destination.values()))
    final: dict[int, dict] = {pk: {} for pk in targets}
    for pk in sorted(attributes_of):  # survivors' own unsourced values first, then the merged ones'
        legacy = {path: value for path, value in attributes_of[pk].items() if path not in sourced_paths.get(pk, ())}
        into = final.setdefault(target_of_profile[pk], {})
        for path, value in legacy.items():
            into.setdefault(path, value)
    by_path: dict[tuple[int, str], list] = {}
    for key, row in best.items():
        by_path.setdefault((key[0], key[1]), []).append(row)
    for (pk, path), rows in by_path.items():
        chosen = winner(rows, graph.settings)
        if chosen is not None:
            final.setdefault(pk, {})[path] = chosen.value
    set_profile_attributes(connection, [(pk, final[pk]) for pk in targets
                                        if final[pk] != attributes_of.get(pk, {})])

    # reports, merged ids, memberships of merged-away profiles, then the profiles themselves
    merged_ids: dict[int, str] = {}
    for other, survivor in sorted(merged.items()):
        connection.execute(identity_removals.update().where(identity_removals.c.profile_pk == other)
                           .values(profile_pk=survivor))
        connection.execute(profile_merges.update().where(profile_merges.c.survivor_pk == other)
                           .values(survivor_pk=survivor))
        connection.execute(identity_links.update().where(identity_links.c.profile_pk == other)
                           .values(profile_pk=survivor))
        external_id = connection.execute(sa.select(profiles.c.external_id).where(profiles.c.pk == other)).scalar_one()
        exit_all(connection, sandbox=sandbox, profile_pk=other, now=now, source="merge")
        connection.execute(memberships.delete().where(memberships.c.profile_pk == other))
        connection.execute(profiles.delete().where(profiles.c.pk == other))
        graph.external_ids.pop(other, None)
        if other not in graph.created_here:
            connection.execute(profile_merges.insert().values(
                sandbox=sandbox, survivor_pk=survivor, merged_external_id=external_id, merged_at=now,
                identities_moved=len(by_profile.get(other, ())), events_moved=0))
            merged_ids[other] = external_id
        else:
            merged_ids[other] = ""
    connection.execute(profiles.update().where(profiles.c.pk.in_(targets)).values(updated_at=now))
    limit = graph.settings.graph_limit
    sizes: dict[int, int] = {}
    for pair in component_of:
        sizes[destination[component_of[pair]]] = sizes.get(destination[component_of[pair]], 0) + 1
    for pk in sorted(pk for pk, size in sizes.items() if size > limit):
        graph._enforce_limit(pk, now)
    graph.regrouped |= set(targets)
    return Regrouped(outcome, destination, created, merged_ids, newly_removed)
