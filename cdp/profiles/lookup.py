"""Finding stored profiles: by any identity, by id (a merged-away id finds the survivor), by a
search text; reading one with its identities, provenance, events and memberships; its events in
pages; and the privacy deletion of one, recorded without personal data."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.errors import NotFound, Unprocessable
from cdp.identity.attributes import provenance
from cdp.identity.namespaces import IdentityValueError, normalize, sandbox_namespaces
from cdp.identity.settings import get_identity_settings
from cdp.profiles.documents import attributes_document, event_document
from cdp.profiles.models import (AttributeSource, EventRead, GraphInfo, IdentityRead, LinkedIdentity, LinkRead,
                                 MembershipRead, PrivacyDeletionRead, ProfileRead, ProfileSummary, RemovedIdentity)
from cdp.schema import Schema
from cdp.storage.models import (attribute_sources, datasets, events, identities, identity_links, identity_removals,
                                memberships, privacy_deletions, profile_merges, profiles, segments)

MAX_SEARCH_TEXT = 256


def find_by_identity(*, connection: sa.Connection, sandbox: str, namespace: str, value: str) -> int:
    """The key of the profile owning the identity (normalised as on ingestion); NotFound else —
    also for a namespace the sandbox does not have and for a value the namespace cannot hold (no
    profile can have it), the message saying why. Messages name the namespace, never the value."""
    known = sandbox_namespaces(connection=connection, sandbox=sandbox)
    shown = namespace[:64]
    if namespace not in known:
        raise NotFound(f"no profile with a {shown!r} identity in sandbox {sandbox!r}: the sandbox has no such namespace "
                       f"(it has {', '.join(known)})",
                       details={"resource": "profile", "namespace": shown, "sandbox": sandbox,
                                "reason": "unknown namespace"})
    try:
        normalized = normalize(namespace, value)
    except IdentityValueError as exc:
        raise NotFound(f"no profile with that {namespace} identity in sandbox {sandbox!r}: {exc.reason}, so no "
                       f"profile can hold it",
                       details={"resource": "profile", "namespace": namespace, "sandbox": sandbox,
                                "reason": exc.reason}) from None
    found = connection.execute(sa.select(identities.c.profile_pk).where(
        identities.c.sandbox == sandbox, identities.c.namespace == namespace,
        identities.c.value == normalized)).scalar()
    if found is None:
        # the identity is personal data: name the namespace, not the value
        raise NotFound(f"no profile with that {namespace} identity in sandbox {sandbox!r}",
                       details={"resource": "profile", "namespace": namespace, "sandbox": sandbox})
    return found


def find_by_id(*, connection: sa.Connection, sandbox: str, profile_id: str) -> int:
    found = connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox,
                                                              profiles.c.external_id == profile_id)).scalar()
    if found is None:
        found = connection.execute(sa.select(profile_merges.c.survivor_pk).where(
            profile_merges.c.sandbox == sandbox, profile_merges.c.merged_external_id == profile_id)).scalar()
    if found is None:
        raise NotFound.resource("profile", profile_id, sandbox)
    return found


def read_profile(*, connection: sa.Connection, sandbox: str, profile_pk: int, schema: Schema,
                 events_limit: int = 50) -> ProfileRead:
    row = connection.execute(sa.select(profiles).where(profiles.c.pk == profile_pk)).one()
    settings = get_identity_settings(connection=connection, sandbox=sandbox)
    identity_rows = connection.execute(sa.select(identities).where(identities.c.profile_pk == profile_pk)
                                       .order_by(identities.c.first_seen, identities.c.pk)).all()
    dataset_names = dict(connection.execute(sa.select(datasets.c.pk, datasets.c.name)
                                            .where(datasets.c.sandbox == sandbox)).all())
    sources = {path: AttributeSource(dataset_id=source.dataset_pk, dataset_name=dataset_names.get(source.dataset_pk, ""),
                                     observed_at=source.observed_at, batch_id=source.batch_pk,
                                     row_number=source.record_index if source.batch_pk is not None else None,
                                     request_id=source.request_id,
                                     record_index=source.record_index if source.batch_pk is None else None)
               for path, source in sorted(provenance(connection, profile_pk=profile_pk, settings=settings).items())
               if path in (row.attributes or {})}
    page, total = profile_events(connection=connection, profile_pk=profile_pk, schema=schema, limit=events_limit,
                                 offset=0)
    member_rows = connection.execute(
        sa.select(segments.c.key, segments.c.name, memberships.c.status, memberships.c.entered_at,
                  memberships.c.exited_at).join(segments, segments.c.pk == memberships.c.segment_pk)
        .where(memberships.c.profile_pk == profile_pk).order_by(segments.c.key)).all()
    removed = connection.execute(sa.select(identity_removals).where(identity_removals.c.profile_pk == profile_pk)
                                 .order_by(identity_removals.c.removed_at.desc(), identity_removals.c.pk.desc())
                                 .limit(100)).all()
    merged = connection.execute(sa.select(profile_merges.c.merged_external_id).where(
        profile_merges.c.survivor_pk == profile_pk).order_by(profile_merges.c.pk)).scalars().all()
    return ProfileRead(
        id=row.external_id,
        identities=[IdentityRead(namespace=r.namespace, id=r.value, first_seen=r.first_seen, last_seen=r.last_seen)
                    for r in identity_rows],
        attributes=attributes_document(row.attributes or {}, schema),
        provenance=sources, events=page, events_total=total,
        memberships=[MembershipRead(segment=m.key, name=m.name, status=m.status, entered_at=m.entered_at,
                                    exited_at=m.exited_at) for m in member_rows],
        graph=GraphInfo(size=len(identity_rows), limit=settings.graph_limit,
                        removed=[RemovedIdentity(namespace=r.namespace, id=r.value, removed_at=r.removed_at,
                                                 reason=r.reason) for r in removed],
                        **_links(connection, profile_pk, [r.pk for r in identity_rows])),
        merged_ids=list(merged), created_at=row.created_at, updated_at=row.updated_at)


_A = identities.alias("a")
_B = identities.alias("b")


def _links(connection: sa.Connection, profile_pk: int, identity_pks: list[int]) -> dict[str, list[LinkRead]]:
    """The profile's links, and the removed links of its identities."""
    query = (sa.select(identity_links, _A.c.namespace.label("a_ns"), _A.c.value.label("a_value"),
                       _B.c.namespace.label("b_ns"), _B.c.value.label("b_value"))
             .join(_A, _A.c.pk == identity_links.c.a_pk).join(_B, _B.c.pk == identity_links.c.b_pk))
    kept = connection.execute(query.where(identity_links.c.profile_pk == profile_pk,
                                          identity_links.c.removed_at.is_(None))
                              .order_by(identity_links.c.last_seen.desc(), identity_links.c.pk.desc()).limit(200)).all()
    removed = []
    if identity_pks:
        removed = connection.execute(query.where(identity_links.c.removed_at.is_not(None), sa.or_(
            identity_links.c.a_pk.in_(identity_pks), identity_links.c.b_pk.in_(identity_pks)))
            .order_by(identity_links.c.removed_at.desc(), identity_links.c.pk.desc()).limit(100)).all()

    def read(r) -> LinkRead:
        in_batch = r.batch_pk is not None
        return LinkRead(identities=[LinkedIdentity(namespace=r.a_ns, id=r.a_value),
                                    LinkedIdentity(namespace=r.b_ns, id=r.b_value)],
                        first_seen=r.first_seen, last_seen=r.last_seen, dataset_id=r.dataset_pk, batch_id=r.batch_pk,
                        row_number=r.record_index if in_batch else None, request_id=r.request_id,
                        record_index=None if in_batch else r.record_index, removed_at=r.removed_at,
                        reason=r.removed_reason)

    return {"links": [read(r) for r in kept], "removed_links": [read(r) for r in removed]}


def profile_events(*, connection: sa.Connection, profile_pk: int, schema: Schema, limit: int, offset: int,
                   types: list[str] | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> tuple[list[EventRead], int]:
    """A page of the profile's events, newest first; ``since`` inclusive, ``until`` exclusive."""
    where = [events.c.profile_pk == profile_pk]
    if types:
        where.append(events.c.type.in_(types))
    if since is not None:
        where.append(events.c.ts >= _utc(since))
    if until is not None:
        where.append(events.c.ts < _utc(until))
    total = connection.execute(sa.select(sa.func.count()).select_from(events).where(*where)).scalar_one()
    rows = connection.execute(sa.select(events.c.event_id, events.c.type, events.c.ts, events.c.fields,
                                        events.c.dataset_pk).where(*where)
                              .order_by(events.c.ts.desc(), events.c.pk.desc()).limit(limit).offset(offset))
    return [EventRead(**event_document(r, schema), dataset_id=r.dataset_pk) for r in rows], total


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def search_profiles(*, connection: sa.Connection, sandbox: str, text: str, limit: int,
                    offset: int) -> tuple[list[ProfileSummary], int]:
    """Profiles whose first or last name or email contains ``text`` (any case), or one of whose
    identities starts with it (as typed, and lower-cased)."""
    # Python strips U+001C…U+001F too, which the document's "not blank" (`\S`) counts as text:
    # such a text is searched as given
    text = text.strip() or text
    if not text:
        raise Unprocessable("give a search text (`q`)", code="validation_error")
    if len(text) > MAX_SEARCH_TEXT:
        raise Unprocessable(f"the search text is at most {MAX_SEARCH_TEXT} characters", code="validation_error")
    lowered = text.lower()
    contains = f"%{_escape(lowered)}%"
    prefixes = {f"{_escape(text)}%", f"{_escape(lowered)}%"}
    attribute_match = sa.or_(*(sa.func.lower(profiles.c.attributes[path].as_string()).like(contains, escape="\\")
                               for path in ("person.first_name", "person.last_name", "email")))
    identity_match = profiles.c.pk.in_(sa.select(identities.c.profile_pk).where(
        identities.c.sandbox == sandbox, sa.or_(*(identities.c.value.like(p, escape="\\") for p in prefixes))))
    where = [profiles.c.sandbox == sandbox, sa.or_(attribute_match, identity_match)]
    total = connection.execute(sa.select(sa.func.count()).select_from(profiles).where(*where)).scalar_one()
    rows = connection.execute(sa.select(profiles.c.pk, profiles.c.external_id, profiles.c.attributes,
                                        profiles.c.updated_at).where(*where)
                              .order_by(profiles.c.updated_at.desc(), profiles.c.pk.desc()).limit(limit).offset(offset)
                              ).all()
    found_identities: dict[int, list[dict[str, str]]] = {}
    if rows:
        for r in connection.execute(sa.select(identities.c.profile_pk, identities.c.namespace, identities.c.value)
                                    .where(identities.c.profile_pk.in_([row.pk for row in rows]))
                                    .order_by(identities.c.pk)):
            bucket = found_identities.setdefault(r.profile_pk, [])
            if len(bucket) < 10:
                bucket.append({"namespace": r.namespace, "id": r.value})
    return [ProfileSummary(id=row.external_id, first_name=(row.attributes or {}).get("person.first_name"),
                           last_name=(row.attributes or {}).get("person.last_name"),
                           email=(row.attributes or {}).get("email"), identities=found_identities.get(row.pk, []),
                           updated_at=row.updated_at) for row in rows], total


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def delete_profile(*, connection: sa.Connection, sandbox: str, profile_pk: int, requested_by: str) -> PrivacyDeletionRead:
    """Remove the profile, its identities, events, memberships and attribute sources; record that
    it happened (counts only)."""
    query = sa.select(profiles.c.external_id).where(profiles.c.pk == profile_pk)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()  # a concurrent merge into this profile waits, then finds it gone
    external_id = connection.execute(query).scalar_one()
    now = datetime.now(timezone.utc)
    from cdp.storage.memberships import exit_all

    exit_all(connection, sandbox=sandbox, profile_pk=profile_pk, now=now, source="privacy")  # the outbox says so
    counts = {
        "identities": connection.execute(identities.delete().where(identities.c.profile_pk == profile_pk)).rowcount,
        "events": connection.execute(events.delete().where(events.c.profile_pk == profile_pk)).rowcount,
        "memberships": connection.execute(memberships.delete().where(memberships.c.profile_pk == profile_pk)).rowcount,
        "attribute_sources": connection.execute(attribute_sources.delete().where(
            attribute_sources.c.profile_pk == profile_pk)).rowcount,
    }
    connection.execute(identity_removals.delete().where(identity_removals.c.profile_pk == profile_pk))
    connection.execute(profile_merges.delete().where(profile_merges.c.survivor_pk == profile_pk))
    connection.execute(profiles.delete().where(profiles.c.pk == profile_pk))
    pk = connection.execute(privacy_deletions.insert().values(
        sandbox=sandbox, profile_external_id=external_id, requested_by=requested_by, requested_at=now, **counts)
        .returning(privacy_deletions.c.pk)).scalar_one()
    return PrivacyDeletionRead(id=pk, profile_id=external_id, requested_by=requested_by, requested_at=now, **counts)


def list_deletions(*, connection: sa.Connection, sandbox: str, limit: int,
                   offset: int) -> tuple[list[PrivacyDeletionRead], int]:
    where = privacy_deletions.c.sandbox == sandbox
    total = connection.execute(sa.select(sa.func.count()).select_from(privacy_deletions).where(where)).scalar_one()
    rows = connection.execute(sa.select(privacy_deletions).where(where)
                              .order_by(privacy_deletions.c.pk.desc()).limit(limit).offset(offset))
    return [PrivacyDeletionRead(id=r.pk, profile_id=r.profile_external_id, requested_by=r.requested_by,
                                requested_at=r.requested_at, identities=r.identities, events=r.events,
                                memberships=r.memberships, attribute_sources=r.attribute_sources) for r in rows], total
