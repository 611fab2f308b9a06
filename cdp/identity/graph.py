"""The identity graph: identities seen together are one person, and one person is one profile.

Every identity (namespace + value) belongs to exactly one profile (``identities``, unique per
sandbox). A record's identities are linked: :meth:`IdentityGraph.resolve_many` (records resolved
together, with the outcome of one after the other) finds the profiles that own any of them —

* none: a new profile gets them all;
* one: it gets the record's new identities;
* several: they **merge** into the oldest (lowest key), which keeps its id: identities, events,
  attribute sources, graph-limit reports are moved to it, its attributes are recomputed by the
  merge policy (cdp/identity/attributes.py), the others are deleted (their memberships with them)
  and their ids recorded in ``profile_merges`` so lookups by an old id find the survivor; the
  survivor's segment memberships are then re-evaluated (cdp/segments/membership.py), not unioned.

So the profiles are always the connected components of the graph of identities seen together
(tests/test_identity_graph_properties.py proves it against networkx), whatever the arrival order.

**Graph limit** (per sandbox, default 50 identities per profile). When a link or merge passes it,
identities are removed from the profile until it fits: cookie namespaces first (``ecid``), then
device namespaces, then person namespaces; within a kind the least recently seen first (a record
or event carrying an identity marks it seen). Removed identities are listed with the profile
(``identity_removals``); the profile's events and attributes stay — nothing else is lost. A
removed identity seen again later starts a new profile, unless it comes with a linked one.

**Concurrency.** On PostgreSQL a write's first attempt locks the owners as it reads them
(``FOR KEY SHARE`` of the profiles and the identities, in key order: a concurrent merge cannot
delete a profile under us, and an identity moved while we waited is not reported as owned), then
the profiles it merges ``FOR UPDATE NOWAIT`` (one that would wait is a lost race); a retry locks
every owner first, in key order (``FOR UPDATE`` where profiles merge, ``FOR KEY SHARE``
elsewhere), and checks the owners again under the locks (IdentityGraph._lock_owners); new identities are
inserted with ``ON CONFLICT DO NOTHING`` in one order for every writer (PostgreSQL makes a second
inserter wait for the first to commit); then the identities already stored are locked in key order
and marked seen (cdp/identity/owners.py: claims before touches, for every writer — no cycle). When
another transaction got in the way —
an identity claimed meanwhile, a profile gone, a deadlock — resolution raises
:class:`ResolutionConflict` (or the database error), and the caller rolls back and tries again
(cdp/ingestion/writer.py), now seeing the other writer's identities as owned. On SQLite a
writer holds the database's write lock for its whole transaction, so nothing interleaves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from cdp.identity import listed
from cdp.identity.attributes import apply_policy_many
from cdp.identity.merging import merge_profiles
from cdp.identity.owners import PendingTouch, find_owners, mark_seen, run_touch
from cdp.identity.namespaces import KIND_RANK, Namespace, NamespaceKind
from cdp.identity.rules import Rules
from cdp.identity.settings import IdentitySettings
from cdp.storage.bulk import claim_identities, insert_links, insert_profiles, upsert_links
from cdp.storage.models import identities, identity_removals, profiles


_UNIQUE_IDENTITIES_OF = ("SELECT profile_pk, namespace, value FROM identities "
                         "WHERE profile_pk {list} AND namespace {list}")
_IDENTITY_COUNTS = "SELECT profile_pk, count(*) FROM identities WHERE profile_pk {list} GROUP BY profile_pk"


def _components(records: list[list[tuple[str, str]]], pairs: list[tuple[str, str]],
                owner: dict[tuple[str, str], int]) -> tuple[dict[int, list[int]], list[int], dict[int, set[int]],
                                                          dict[int, list[int]]]:
    """Union-find over the records' identities and their owners, in arrival order (integer nodes:
    an identity is its place in ``pairs``). Returns (root → the indexes of its records, roots in
    order of their first record; each record's root; root → the owner profiles in its component;
    record index → the owner profiles it joined, when it joined two or more)."""
    node_of = {pair: node for node, pair in enumerate(pairs)}
    parent = list(range(len(pairs)))
    owners_of: dict[int, set[int]] = {}  # only roots with owners
    first_node: dict[int, int] = {}
    for pair, pk in owner.items():  # a profile's identities are one component from the start
        node = node_of[pair]
        root = first_node.setdefault(pk, node)
        if root == node:
            owners_of[node] = {pk}
        else:
            parent[node] = root

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = node = parent[parent[node]]
        return node

    record_nodes = [[node_of[pair] for pair in record] for record in records]
    links: dict[int, list[int]] = {}
    for index, nodes in enumerate(record_nodes):
        if len(nodes) == 1:  # joins nothing
            continue
        roots = list(dict.fromkeys(find(node) for node in nodes))
        if len(roots) == 1:
            continue
        owned = [root for root in roots if root in owners_of]
        if len(owned) > 1:
            links[index] = sorted(set().union(*(owners_of[root] for root in owned)))
        head = roots[0]
        for root in roots[1:]:
            parent[root] = head
            if root in owners_of:
                owners_of.setdefault(head, set()).update(owners_of.pop(root))
    record_roots = [find(nodes[0]) for nodes in record_nodes]
    components: dict[int, list[int]] = {}
    for index, root in enumerate(record_roots):
        components.setdefault(root, []).append(index)
    return components, record_roots, {root: owners_of.get(root, set()) for root in components}, links


def _pair_profiles(records: list[list[tuple[str, str]]], record_profiles: list[int]) -> dict[tuple[str, str], int]:
    """Each identity's profile: its record's (the identities of a record are one component)."""
    return {pair: pk for record, pk in zip(records, record_profiles) for pair in record}


class ResolutionConflict(RuntimeError):
    """Concurrent writers kept changing the record's identities; the caller retries the record."""


@dataclass
class Resolution:
    profile_pk: int
    external_id: str
    created: bool = False
    merged: list[str] = field(default_factory=list)  # ids of the profiles merged into this one
    removed: list[tuple[str, str]] = field(default_factory=list)  # identities the graph limit removed
    unlinked: list[str] = field(default_factory=list)  # links the linking rules removed: "ns:value – ns:value"
    split: list[str] = field(default_factory=list)  # ids of profiles split off by those removals


@dataclass(frozen=True)
class Lineage:
    """Which write links come from (kept with each link, as attribute sources keep theirs)."""

    dataset_pk: int | None = None
    batch_pk: int | None = None
    request_id: str | None = None


class IdentityGraph:
    """Resolution and merges on one connection (inside the caller's transaction)."""

    def __init__(self, connection: sa.Connection, *, sandbox: str, namespaces: dict[str, Namespace],
                 settings: IdentitySettings, rules: Rules | None = None):
        """``rules``: the linking rules of ``namespaces`` and ``settings`` when the caller keeps them
        (a request's configuration: cdp/ingestion/config.py), else made here."""
        self.connection = connection
        self.sandbox = sandbox
        self.namespaces = namespaces
        self.settings = settings
        self.dialect = connection.dialect.name
        self.created_here: set[int] = set()  # profiles created by this transaction (no merge record needed)
        self.external_ids: dict[int, str] = {}  # profile key → id (ids never change; merged ones are dropped)
        self.rules = rules or Rules.of(namespaces, settings.unique_namespaces, settings.namespace_priority)
        self.lineage = Lineage()
        self.identity_pks: dict[tuple[str, str], int] = {}
        self.claimed: set[int] = set()  # identities inserted by this call (none of their links exists yet)
        self.regrouped: set[int] = set()  # profiles a split changed in the last resolve_many (memberships)
        self.lock_at_read = True  # PostgreSQL: lock the owners as they are read (the first attempt of a write)
        # PostgreSQL: leave the identities' last_seen update to the caller's next statement (an event
        # insert: one round trip less while they are locked); what is left is in ``pending_touch``
        self.defer_touch = False
        self.pending_touch: PendingTouch | None = None
        # owner → its event count as the last resolve_many read it (profiles it merged are left out:
        # their counts changed)
        self.event_counts: dict[int, int] = {}

    # ---- reading -------------------------------------------------------------------------------

    def owners(self, pairs: list[tuple[str, str]], *, lock: bool = False) -> dict[tuple[str, str], int]:
        """The owners of the stored identities among ``pairs`` (cdp/identity/owners.py); ``lock``
        (PostgreSQL): the owners and the identities are locked ``FOR KEY SHARE`` as they are read."""
        found = {}
        for row in find_owners(self.connection, self.sandbox, pairs, lock=lock):
            found[(row.namespace, row.value)] = row.profile_pk
            self.identity_pks[(row.namespace, row.value)] = row.pk
            self.external_ids[row.profile_pk] = row.external_id
            self.event_counts[row.profile_pk] = row.event_count
        return found

    # ---- resolution ----------------------------------------------------------------------------

    def resolve_many(self, records: list[list[tuple[str, str]]], now: datetime,
                     indices: list[int] | None = None) -> list[Resolution]:
        """The profile of each record (its normalised, distinct identities), linking and merging as
        needed and marking the identities seen at ``now`` — with the same outcome as one after the other
        (each record's profile is the one its identities end in; a merge is reported on the record
        that linked the profiles), in a few set-wise statements. Raises ResolutionConflict when a
        concurrent writer got in the way (PostgreSQL): the caller rolls back and tries again.
        ``indices``: each record's index in its request or batch (kept with its links).

        Groups of records whose graph would hold two identities of a unique namespace are resolved
        by the linking rules instead (cdp/identity/split.py: links removed, profiles split)."""
        self.regrouped = set()
        # keys looked up or claimed by this call only: an attempt rolled back (PostgreSQL) leaves none
        self.identity_pks, self.claimed, self.event_counts = {}, set(), {}
        self.pending_touch = None  # one of an attempt rolled back: gone with it
        indices = list(range(len(records))) if indices is None else indices
        pairs = list(dict.fromkeys(pair for record in records for pair in record))
        # PostgreSQL, first attempt: read under locks, so that no merge, split or deletion moves
        # them until we commit (one statement); a retry locks first and reads again (see below)
        locked_read = self.dialect == "postgresql" and self.lock_at_read
        owner = self.owners(pairs, lock=locked_read)
        components, roots, owners_of, links = _components(records, pairs, owner)
        if self.rules.unique:
            conflicted = self._conflicted(records, components, owner, owners_of)
            if conflicted:
                return self._resolve_by_rules(records, now, indices, conflicted)
        merging = sorted({pk for root in components if len(owners_of[root]) > 1 for pk in owners_of[root]})
        if self.dialect == "postgresql":
            self._lock_owners(pairs, owner, merging, locked_read)
        # a profile per component: the oldest owner, or a new one
        fresh = [root for root in components if not owners_of[root]]
        created_in_order = self._create_profiles(len(fresh), now)
        created = set(created_in_order)
        profile_of: dict[int, int] = dict(zip(fresh, created_in_order))
        merged_into: dict[int, int] = {}
        for root in components:
            if owners_of[root]:
                survivor, *others = sorted(owners_of[root])
                profile_of[root] = survivor
                merged_into.update((other, survivor) for other in others)
        merged_ids = {pk: external_id or "" for pk, external_id in self._merge_all(merged_into, now).items()}
        for pk in {*merged_into, *merged_into.values()}:
            self.event_counts.pop(pk, None)
        record_profiles = [profile_of[root] for root in roots]
        missing = [position for position, pair in enumerate(pairs) if pair not in owner]
        pair_profile = _pair_profiles(records, record_profiles) if missing else {}
        if missing:
            rows = sorted(({"sandbox": self.sandbox, "profile_pk": pair_profile[pairs[position]],
                            "namespace": pairs[position][0], "value": pairs[position][1], "first_seen": now,
                            "last_seen": now} for position in missing),
                          key=lambda row: (row["namespace"], row["value"]))  # one order for every writer
            if self.claim(rows) != len(rows):
                raise ResolutionConflict("another writer claimed an identity of the batch")
        self._touch([pair for pair in pairs if pair in owner], now)
        self._write_links(records, indices, record_profiles, now)
        # the graph limit, where it can be passed: a new profile holds exactly its component's
        # identities; profiles that grew are counted in one statement
        limit = self.settings.graph_limit
        new_sizes: dict[int, int] = {}
        for position in missing:
            pk = pair_profile[pairs[position]]
            new_sizes[pk] = new_sizes.get(pk, 0) + 1
        grown = {profile_of[root] for root in components if len(owners_of[root]) > 1}
        grown |= {pk for pk, size in new_sizes.items() if pk not in created or size > limit}
        counts = listed.run(self.connection, _IDENTITY_COUNTS, listed.keys(sorted(grown))).all() if grown else []
        over = [pk for pk, count in counts if count > limit]
        removed = {pk: self._enforce_limit(pk, now) for pk in sorted(over)}
        apply_policy_many(self.connection, merged_into.values(), self.settings)
        external = self._external_ids(sorted(set(profile_of.values())))
        resolutions = []
        reported: set[int] = set()
        for index, profile_pk in enumerate(record_profiles):
            resolution = Resolution(profile_pk, external[profile_pk], created=profile_pk in created)
            if index in links:
                resolution.merged = [merged_ids[pk] for pk in links[index] if pk in merged_ids and merged_ids[pk]
                                     and pk not in reported]
                reported.update(links[index])
            if profile_pk in removed and profile_pk not in reported:
                resolution.removed = removed[profile_pk]
                reported.add(profile_pk)
            resolutions.append(resolution)
        return resolutions

    def _lock_owners(self, pairs: list[tuple[str, str]], owner: dict[tuple[str, str], int], merging: list[int],
                     locked_read: bool) -> None:
        """PostgreSQL: hold the owners so that nothing moves the identities until we commit — the
        profiles to merge exclusively (``FOR UPDATE``: the merge deletes them), the others ``FOR KEY
        SHARE`` (a concurrent merge cannot delete them).

        After a locked read (the first attempt) the shared locks are held already; the profiles to
        merge are upgraded with ``NOWAIT``: two writers upgrading profiles both hold would deadlock
        (and PostgreSQL detects that only after deadlock_timeout), so a writer that would wait gives
        up at once (lock_not_available: a lost race) and its next attempt, reading without locks,
        locks every owner in key order — writers then queue, never deadlock — and reads the owners
        again under the locks: changed meanwhile, it is a lost race again."""
        if locked_read:
            if merging:
                self.connection.execute(sa.select(profiles.c.pk).where(profiles.c.pk.in_(merging))
                                        .order_by(profiles.c.pk).with_for_update(nowait=True)).all()
            return
        all_owners = sorted(set(owner.values()))
        if not all_owners:
            return
        query = sa.select(profiles.c.pk).where(profiles.c.pk.in_(all_owners)).order_by(profiles.c.pk)
        query = query.with_for_update() if merging else query.with_for_update(read=True, key_share=True)
        if len(self.connection.execute(query).all()) != len(all_owners) or self.owners(pairs) != owner:
            raise ResolutionConflict("profiles changed under the batch")

    def _create_profiles(self, count: int, now: datetime) -> list[int]:
        if not count:
            return []
        rows = [{"sandbox": self.sandbox, "external_id": f"p-{uuid.uuid4().hex}", "attributes": {},
                 "created_at": now, "updated_at": now} for _ in range(count)]
        created = insert_profiles(self.connection, rows)
        for pk, row in zip(created, rows):
            self.created_here.add(pk)
            self.external_ids[pk] = row["external_id"]
        return list(created)

    def _external_ids(self, profile_pks: list[int]) -> dict[int, str]:
        missing = [pk for pk in profile_pks if pk not in self.external_ids]
        if missing:
            self.external_ids.update(listed.run(self.connection, "SELECT pk, external_id FROM profiles WHERE pk {list}",
                                                listed.keys(missing)).all())
        return {pk: self.external_ids[pk] for pk in profile_pks}

    def _touch(self, pairs: list[tuple[str, str]], now: datetime) -> None:
        """Mark the (stored) identities seen at ``now`` (PostgreSQL with ``defer_touch``: locked now,
        updated by the caller's next statement — :meth:`take_touch`)."""
        if pairs:
            self.flush_touch()  # one pending touch at most (the rules' path touches per chunk)
            self.pending_touch = mark_seen(self.connection, list(self.pks_of(pairs).values()), now,
                                           defer=self.defer_touch)

    def take_touch(self) -> PendingTouch | None:
        """The touch left for the caller's next statement (its PendingTouch.cte), now the caller's."""
        pending, self.pending_touch = self.pending_touch, None
        return pending

    def flush_touch(self) -> None:
        """Run a pending touch on its own (before anything reads ``last_seen``)."""
        pending = self.take_touch()
        if pending is not None:
            run_touch(self.connection, pending)

    # ---- links and the linking rules -----------------------------------------------------------

    def _conflicted(self, records, components, owner, owners_of) -> list[int]:
        """The records of the groups that would hold two identities of a unique namespace."""
        unique = self.rules.unique
        asking = sorted({pk for root, indexes in components.items() if owners_of[root] and (
            len(owners_of[root]) > 1 or any(pair[0] in unique and pair not in owner
                                            for index in indexes for pair in records[index]))
            for pk in owners_of[root]})
        held: dict[int, list[tuple[str, str]]] = {}
        if asking:
            for profile_pk, namespace, value in listed.run(self.connection, _UNIQUE_IDENTITIES_OF, listed.keys(asking),
                                                           listed.Many(sorted(unique), "varchar")).all():
                held.setdefault(profile_pk, []).append((namespace, value))
        conflicted: list[int] = []
        for root, indexes in components.items():
            found = [pair for index in indexes for pair in records[index] if pair[0] in unique]
            found += [pair for pk in owners_of[root] for pair in held.get(pk, ())]
            if self.rules.doubled(found):
                conflicted += indexes
        return sorted(conflicted)

    def _resolve_by_rules(self, records, now, indices, conflicted: list[int]) -> list[Resolution]:
        from cdp.identity.split import resolve_by_rules

        chosen = set(conflicted)
        rest = [index for index in range(len(records)) if index not in chosen]
        answers: dict[int, Resolution] = {}
        if rest:
            answers.update(zip(rest, self.resolve_many([records[i] for i in rest], now, [indices[i] for i in rest])))
        regrouped = set(self.regrouped)
        answers.update(zip(conflicted, resolve_by_rules(self, [records[i] for i in conflicted], now,
                                                        [indices[i] for i in conflicted])))
        self.regrouped |= regrouped
        self.event_counts = {}  # a split moved events: the writer reads the counts again
        return [answers[index] for index in range(len(records))]

    def claim(self, rows: list[dict]) -> int:
        """Insert new identities (claim_identities), remembering their keys; how many were inserted."""
        keys: dict[tuple[str, str], int] = {}
        count = claim_identities(self.connection, rows, keys)
        self.identity_pks.update(keys)
        self.claimed.update(keys.values())
        return count

    def pks_of(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Identity keys (looked up once per transaction)."""
        missing = [pair for pair in dict.fromkeys(pairs) if pair not in self.identity_pks]
        if missing:
            self.owners(missing)
        return {pair: self.identity_pks[pair] for pair in pairs}

    def _write_links(self, records, indices, profile_pks, now: datetime, removed: dict | None = None,
                     profile_of_pair: dict | None = None) -> None:
        """Store the records' links (every two identities of a record) as seen now, by them, on
        their profile (``profile_of_pair``: the profile of each link's first identity instead);
        ``removed``: (a key, b key) → why the rules removed that link."""
        linking = [(record, index, profile_pk) for record, index, profile_pk in zip(records, indices, profile_pks)
                   if len(record) > 1]
        if not linking:
            return
        pks = self.pks_of([pair for record, _, _ in linking for pair in record])
        rows: dict[tuple[int, int], dict] = {}
        lineage = self.lineage
        for record, index, profile_pk in linking:
            keyed = sorted((pks[pair], pair) for pair in record)
            for position, (a_pk, a) in enumerate(keyed):
                for b_pk, _ in keyed[position + 1:]:
                    reason = (removed or {}).get((a_pk, b_pk))
                    rows[(a_pk, b_pk)] = {
                        "sandbox": self.sandbox, "a_pk": a_pk, "b_pk": b_pk,
                        "profile_pk": profile_pk if profile_of_pair is None else profile_of_pair[a],
                        "first_seen": now, "last_seen": now, "seen_order": index, "dataset_pk": lineage.dataset_pk,
                        "batch_pk": lineage.batch_pk, "request_id": lineage.request_id, "record_index": index,
                        "removed_at": now if reason else None, "removed_reason": reason}
        # a link of an identity inserted just now cannot exist yet: a plain insert (COPY on PostgreSQL)
        claimed = self.claimed
        insert_links(self.connection, [r for key, r in rows.items() if key[0] in claimed or key[1] in claimed])
        upsert_links(self.connection, [r for key, r in rows.items() if key[0] not in claimed and key[1] not in claimed])

    # ---- merging -------------------------------------------------------------------------------

    def _merge_all(self, survivor_of: dict[int, int], now: datetime) -> dict[int, str | None]:
        """Merge each profile into its survivor, all at once (cdp/identity/merging.py); merged
        profile → its id (None when this transaction created it)."""
        merged = merge_profiles(self.connection, sandbox=self.sandbox, survivor_of=survivor_of, now=now,
                                settings=self.settings, created_here=self.created_here)
        for pk in merged:
            self.external_ids.pop(pk, None)
        return merged

    # ---- the graph limit -----------------------------------------------------------------------

    def _kind(self, namespace: str) -> NamespaceKind:
        found = self.namespaces.get(namespace)
        return found.kind if found is not None else NamespaceKind.cookie

    def _enforce_limit(self, profile_pk: int, now: datetime) -> list[tuple[str, str]]:
        self.flush_touch()  # it drops the least recently seen: last_seen must be written first
        limit = self.settings.graph_limit
        count = self.connection.execute(sa.select(sa.func.count()).select_from(identities)
                                        .where(identities.c.profile_pk == profile_pk)).scalar_one()
        if count <= limit:
            return []
        rows = self.connection.execute(sa.select(identities.c.pk, identities.c.namespace, identities.c.value,
                                                 identities.c.first_seen, identities.c.last_seen)
                                       .where(identities.c.profile_pk == profile_pk)).all()
        ordered = sorted(rows, key=lambda r: (KIND_RANK[self._kind(r.namespace)], r.last_seen or r.first_seen,
                                              r.first_seen, r.pk))
        drop = ordered[:count - limit]
        self.connection.execute(identities.delete().where(identities.c.pk.in_([r.pk for r in drop])))
        self.connection.execute(identity_removals.insert(), [
            {"profile_pk": profile_pk, "namespace": r.namespace, "value": r.value, "removed_at": now,
             "reason": f"graph limit of {limit} identities passed: removed as the least recently seen "
                       f"{self._kind(r.namespace).value} identity"} for r in drop])
        return [(r.namespace, r.value) for r in drop]
