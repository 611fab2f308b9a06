"""Writes of membership rows that live below the domain packages: the exits of a profile that is
about to disappear (merged away by the identity graph, deleted for privacy) and the hourly
segment history. The identity graph and the profile service call :func:`exit_all`; the segments
package (cdp/segments) builds everything else on these."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.storage.models import membership_changes, memberships, profiles, segment_due, segment_history, segments

MEMBER = ("realized", "existing")  # the statuses of a current member; exited is not


def hour_of(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def record_history(connection: sa.Connection, *, segment_pk: int, at: datetime, entered: int, exited: int,
                   size: int | None = None) -> None:
    """Add entries and exits to the segment's row for the hour of ``at``; ``size`` is the size
    after the change (None: the last known size plus entries minus exits)."""
    hour = hour_of(at)
    row = connection.execute(sa.select(segment_history).where(
        segment_history.c.segment_pk == segment_pk, segment_history.c.at == hour)).first()
    if row is not None:
        new_size = size if size is not None else row.size + entered - exited
        connection.execute(segment_history.update().where(
            segment_history.c.segment_pk == segment_pk, segment_history.c.at == hour).values(
            size=new_size, entered=segment_history.c.entered + entered, exited=segment_history.c.exited + exited))
        return
    if size is None:
        size = connection.execute(sa.select(sa.func.count()).select_from(memberships).where(
            memberships.c.segment_pk == segment_pk, memberships.c.status.in_(MEMBER))).scalar_one()
    connection.execute(segment_history.insert().values(segment_pk=segment_pk, at=hour, size=size, entered=entered,
                                                       exited=exited))


def record_history_many(connection: sa.Connection, *, changes: dict[int, tuple[int, int]], at: datetime) -> None:
    """:func:`record_history` for several segments at once (segment pk → (entered, exited)), with
    the last known sizes: one update of the hour's rows (size, entered, exited moved by the
    changes); only when some segment has no row for the hour yet, one read of which, one count of
    their members and one insert — not two statements per segment."""
    if not changes:
        return
    hour = hour_of(at)
    keys = sorted(changes)  # one order for every writer
    bumped = connection.execute(_HOUR_UPDATE, [
        {"b_pk": pk, "b_at": hour, "b_entered": changes[pk][0], "b_exited": changes[pk][1]} for pk in keys])
    if connection.dialect.supports_sane_multi_rowcount and bumped.rowcount == len(keys):
        return  # every segment had its row for the hour (the common case)
    found = set(connection.execute(_HOUR_ROWS, {"b_keys": keys, "b_at": hour}).scalars())
    missing = [pk for pk in keys if pk not in found]
    if missing:
        sizes = dict(connection.execute(_SIZES, {"b_keys": missing}).all())
        connection.execute(segment_history.insert(), [
            {"segment_pk": pk, "at": hour, "size": sizes.get(pk, 0), "entered": changes[pk][0],
             "exited": changes[pk][1]} for pk in missing])


# built once (streaming evaluation writes history on every membership change)
_HOUR_ROWS = sa.select(segment_history.c.segment_pk).where(
    segment_history.c.segment_pk.in_(sa.bindparam("b_keys", expanding=True)),
    segment_history.c.at == sa.bindparam("b_at"))
_HOUR_UPDATE = segment_history.update().where(
    segment_history.c.segment_pk == sa.bindparam("b_pk"), segment_history.c.at == sa.bindparam("b_at")).values(
    size=segment_history.c.size + sa.bindparam("b_entered") - sa.bindparam("b_exited"),
    entered=segment_history.c.entered + sa.bindparam("b_entered"),
    exited=segment_history.c.exited + sa.bindparam("b_exited"))
_SIZES = sa.select(memberships.c.segment_pk, sa.func.count()).where(
    memberships.c.segment_pk.in_(sa.bindparam("b_keys", expanding=True)), memberships.c.status.in_(MEMBER)
).group_by(memberships.c.segment_pk)


def exit_all(connection: sa.Connection, *, sandbox: str, profile_pk: int, now: datetime, source: str) -> int:
    """A profile about to disappear (merged away, deleted): each of its memberships exits, with an
    outbox row, before the rows go. Returns how many exited."""
    rows = connection.execute(
        sa.select(memberships.c.segment_pk, segments.c.key, profiles.c.external_id)
        .join(segments, segments.c.pk == memberships.c.segment_pk)
        .join(profiles, profiles.c.pk == memberships.c.profile_pk)
        .where(memberships.c.profile_pk == profile_pk, memberships.c.status.in_(MEMBER))).all()
    if rows:
        connection.execute(membership_changes.insert(), [
            {"sandbox": sandbox, "segment_pk": r.segment_pk, "segment_key": r.key, "profile_pk": profile_pk,
             "profile_id": r.external_id, "status": "exited", "at": now, "source": source} for r in rows])
        connection.execute(memberships.update().where(memberships.c.profile_pk == profile_pk,
                                                      memberships.c.status.in_(MEMBER))
                           .values(status="exited", exited_at=now, updated_at=now))
        for r in rows:
            record_history(connection, segment_pk=r.segment_pk, at=now, entered=0, exited=1)
    connection.execute(segment_due.delete().where(segment_due.c.profile_pk == profile_pk))
    return len(rows)
