"""Custom identity namespaces and the identity settings of a sandbox, as services for the API."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.identity.attributes import apply_policy
from cdp.identity.models import (IdentitySettingsRead, IdentitySettingsWrite, NamespaceCreate, NamespaceRead,
                                 ReevaluationRead)
from cdp.identity.namespaces import BUILTIN_NAMESPACES, Namespace, sandbox_namespaces
from cdp.identity.reevaluation import KIND_NAME
from cdp.identity.rules import priority_order
from cdp.identity.settings import IdentitySettings, get_identity_settings, put_identity_settings
from cdp.storage.models import attribute_sources, identities, identity_namespaces, jobs, profiles

MAX_CUSTOM_NAMESPACES = 100


def _counts(connection: sa.Connection, sandbox: str) -> dict[str, int]:
    return dict(connection.execute(sa.select(identities.c.namespace, sa.func.count()).where(
        identities.c.sandbox == sandbox).group_by(identities.c.namespace)).all())


def _read(namespace: Namespace, count: int) -> NamespaceRead:
    return NamespaceRead(code=namespace.code, name=namespace.name, kind=namespace.kind, builtin=namespace.builtin,
                         description=namespace.description, identities=count)


def list_namespaces(*, connection: sa.Connection, sandbox: str) -> list[NamespaceRead]:
    counts = _counts(connection, sandbox)
    return [_read(ns, counts.get(code, 0)) for code, ns in sandbox_namespaces(connection=connection,
                                                                              sandbox=sandbox).items()]


def create_namespace(*, connection: sa.Connection, sandbox: str, spec: NamespaceCreate) -> NamespaceRead:
    known = sandbox_namespaces(connection=connection, sandbox=sandbox)
    if spec.code in known:
        what = "a built-in namespace" if known[spec.code].builtin else "already a namespace of this sandbox"
        raise Conflict(f"{spec.code!r} is {what}", code="namespace_exists", details={"code": spec.code})
    if len(known) - len(BUILTIN_NAMESPACES) >= MAX_CUSTOM_NAMESPACES:
        raise Unprocessable(f"a sandbox has at most {MAX_CUSTOM_NAMESPACES} custom namespaces",
                            code="too_many_namespaces")
    connection.execute(identity_namespaces.insert().values(
        sandbox=sandbox, code=spec.code, name=spec.name, kind=spec.kind.value, description=spec.description,
        created_at=datetime.now(timezone.utc)))
    return _read(Namespace(spec.code, spec.name, spec.kind, False, spec.description), 0)


def delete_namespace(*, connection: sa.Connection, sandbox: str, code: str) -> None:
    if code in BUILTIN_NAMESPACES:
        raise Conflict(f"{code!r} is a built-in namespace; it cannot be deleted", code="namespace_builtin")
    found = connection.execute(sa.select(identity_namespaces.c.pk).where(
        identity_namespaces.c.sandbox == sandbox, identity_namespaces.c.code == code)).scalar()
    if found is None:
        raise NotFound.resource("namespace", code, sandbox)
    used = _counts(connection, sandbox).get(code, 0)
    if used:
        raise Conflict(f"{used} identities of namespace {code!r} exist; delete their profiles first (privacy "
                       f"deletion) or keep the namespace", code="namespace_in_use",
                       details={"code": code, "identities": used})
    connection.execute(identity_namespaces.delete().where(identity_namespaces.c.pk == found))


def _settings_read(connection: sa.Connection, sandbox: str, settings: IdentitySettings,
                   recomputed: int | None = None) -> IdentitySettingsRead:
    namespaces = sandbox_namespaces(connection=connection, sandbox=sandbox)
    job = connection.execute(sa.select(jobs).where(jobs.c.kind == KIND_NAME, jobs.c.sandbox == sandbox)
                             .order_by(jobs.c.pk.desc()).limit(1)).first()
    return IdentitySettingsRead(
        merge_policy=settings.merge_policy, dataset_precedence=list(settings.dataset_precedence),
        graph_limit=settings.graph_limit, updated_at=settings.updated_at, profiles_recomputed=recomputed,
        unique_namespaces=list(settings.unique_namespaces),
        namespace_priority=priority_order(namespaces, settings.namespace_priority),
        reevaluation=None if job is None else ReevaluationRead(
            job_id=job.pk, status=job.status, message=job.message or job.last_error, created_at=job.created_at,
            finished_at=job.finished_at))


def read_settings(*, connection: sa.Connection, sandbox: str) -> IdentitySettingsRead:
    return _settings_read(connection, sandbox, get_identity_settings(connection=connection, sandbox=sandbox))


def replace_settings(*, connection: sa.Connection, sandbox: str, spec: IdentitySettingsWrite) -> IdentitySettingsRead:
    """Store the settings and re-apply the merge policy to every profile with attribute sources
    (in this request: the answer says how many). A lower graph limit applies from the next link
    of each profile on; nothing is removed retroactively. New linking rules apply to a graph from
    its next link on (the caller queues the re-evaluation job when asked: cdp/ingestion/reevaluation.py)."""
    before = get_identity_settings(connection=connection, sandbox=sandbox)
    settings = put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=spec.merge_policy,
                                     dataset_precedence=spec.dataset_precedence, graph_limit=spec.graph_limit,
                                     unique_namespaces=spec.unique_namespaces,
                                     namespace_priority=spec.namespace_priority,
                                     namespaces=frozenset(sandbox_namespaces(connection=connection, sandbox=sandbox)))
    recomputed = 0
    if (before.merge_policy, before.dataset_precedence) != (settings.merge_policy, settings.dataset_precedence):
        sourced = connection.execute(sa.select(attribute_sources.c.profile_pk).distinct().join(
            profiles, profiles.c.pk == attribute_sources.c.profile_pk).where(profiles.c.sandbox == sandbox)
            .order_by(attribute_sources.c.profile_pk)).scalars().all()
        for profile_pk in sourced:
            apply_policy(connection, profile_pk=profile_pk, settings=settings)
        recomputed = len(sourced)
    return _settings_read(connection, sandbox, settings, recomputed)
