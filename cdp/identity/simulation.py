"""``POST /v1/identity/simulate``: what the linking rules would make of some records — the
profiles, the links kept and removed (and why), the records ingestion would reject — with nothing
stored. The records are taken as arriving in their order (the later, the newer), one after the
other as ingestion applies them, into an empty graph, under the sandbox's rules or the rules the request tries."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.errors import Unprocessable
from cdp.identity.models import (SimulatedIdentity, SimulatedLink, SimulatedProfile, SimulatedRejection,
                                 SimulationRead, SimulationRequest)
from cdp.identity.namespaces import IdentityValueError, normalize, sandbox_namespaces
from cdp.identity.rules import Identity, Link, Rules, apply_records
from cdp.identity.settings import get_identity_settings


def simulate(*, connection: sa.Connection, sandbox: str, spec: SimulationRequest) -> SimulationRead:
    namespaces = sandbox_namespaces(connection=connection, sandbox=sandbox)
    settings = get_identity_settings(connection=connection, sandbox=sandbox)
    unique = settings.unique_namespaces if spec.unique_namespaces is None else tuple(spec.unique_namespaces)
    priority = settings.namespace_priority if spec.namespace_priority is None else tuple(spec.namespace_priority)
    errors = [f"{name}: no namespace {code!r} in sandbox {sandbox!r}"
              for name, codes in (("unique_namespaces", unique), ("namespace_priority", priority or ()))
              for code in codes if code not in namespaces]
    if errors:
        raise Unprocessable(errors[0], code="invalid_identity_settings", details={"errors": errors})
    rules = Rules.of(namespaces, unique, priority)
    rejected: list[SimulatedRejection] = []
    accepted: list[tuple[int, list[Identity]]] = []
    for index, record in enumerate(spec.records):
        pairs: list[Identity] = []
        problem = None
        for position, identity in enumerate(record.identities):
            if identity.namespace not in namespaces:
                problem = f"identities[{position}]: unknown namespace {identity.namespace!r}"
                break
            try:
                pair = (identity.namespace, normalize(identity.namespace, identity.id))
            except IdentityValueError as exc:
                problem = f"identities[{position}]: invalid {identity.namespace} identity: {exc.reason}"
                break
            if pair not in pairs:
                pairs.append(pair)
        doubled = None if problem else rules.doubled(pairs)
        if doubled:
            problem = f"two {doubled} identities in one record ({doubled} is a unique namespace)"
        if problem:
            rejected.append(SimulatedRejection(record=index, message=problem))
        else:
            accepted.append((index, pairs))
    outcome = apply_records([(pairs, (index,)) for index, pairs in accepted], rules)

    def shown(link: Link) -> SimulatedLink:
        return SimulatedLink(identities=[SimulatedIdentity(namespace=ns, id=value) for ns, value in (link.a, link.b)],
                             record=link.seen[0], reason=link.reason)

    records_of: dict[int, list[int]] = {}
    for index, pairs in accepted:
        records_of.setdefault(outcome.component_of[rules.top(pairs)], []).append(index)
    return SimulationRead(
        unique_namespaces=list(unique), namespace_priority=list(rules.rank),
        profiles=[SimulatedProfile(identities=[SimulatedIdentity(namespace=ns, id=value)
                                               for ns, value in sorted(group, key=rules.ranked)],
                                   records=records_of.get(number, []))
                  for number, group in enumerate(outcome.components)],
        links=[shown(link) for link in sorted(outcome.kept, key=lambda link: (link.a, link.b))],
        removed_links=[shown(link) for link in sorted(outcome.removed, key=lambda link: (link.a, link.b))],
        rejected=rejected)
