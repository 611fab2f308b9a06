"""Governance of a sandbox: labels (standard and custom), marketing actions (core and custom),
policies, and their evaluation with lineage (:func:`evaluate`, which activation calls too).

A policy denies a marketing action when its deny condition holds over the labels in play: the
labels, at dataset or field level, of the datasets that supply the fields in play
(cdp/governance/lineage.py). Only enabled policies count. A decision is a value: allowed or not,
every label in play, and each violation with the policy, the labels that made its condition
true and the lineage (attribute → dataset → label → policy).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from cdp.dsl import PqlError, check
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.governance import policy_language as language
from cdp.governance.actions import CORE_ACTIONS
from cdp.governance.labels import RESERVED_NAMES, STANDARD_LABELS, STANDARD_MEANINGS, family
from cdp.governance.lineage import LabelSource, fields_in_play, label_lineage
from cdp.governance.models import (DatasetRef, LabelCreate, LabelFamily, LabelRead, LabelUpdate, LineageStep,
                                   MarketingActionCreate, MarketingActionRead, MarketingActionUpdate, PolicyCreate,
                                   PolicyDecision, PolicyRead, PolicyRef, PolicyStatus, PolicyUpdate, Violation)
from cdp.schema import Schema
from cdp.storage.models import custom_labels, marketing_actions, policies

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _page(items: list, limit: int, offset: int) -> tuple[list, int]:
    return items[offset:offset + limit], len(items)


# ---- labels ------------------------------------------------------------------------------------


def _standard_read(name: str) -> LabelRead:
    title, meaning = STANDARD_MEANINGS[name]
    return LabelRead(name=name, family=LabelFamily(family(name)), standard=True, title=title, description=meaning,
                     created_at=None)


def _custom_read(row) -> LabelRead:
    return LabelRead(name=row.name, family=LabelFamily.custom, standard=False, title=None,
                     description=row.description, created_at=row.created_at)


def _custom_rows(connection: sa.Connection, sandbox: str) -> list:
    return connection.execute(sa.select(custom_labels).where(custom_labels.c.sandbox == sandbox)
                              .order_by(custom_labels.c.name)).all()


def known_labels(*, connection: sa.Connection, sandbox: str) -> set[str]:
    """The labels a policy of the sandbox may name: the standard ones and its custom ones."""
    return set(STANDARD_LABELS) | {row.name for row in _custom_rows(connection, sandbox)}


def list_labels(*, connection: sa.Connection, sandbox: str, limit: int, offset: int,
                family_: LabelFamily | None = None) -> tuple[list[LabelRead], int]:
    """The standard labels (C1–C12, I1–I2, S1–S2, in that order), then the custom ones by name."""
    found = [_standard_read(name) for name in STANDARD_LABELS] + [_custom_read(r) for r in
                                                                  _custom_rows(connection, sandbox)]
    if family_ is not None:
        found = [label for label in found if label.family == family_]
    return _page(found, limit, offset)


def get_label(*, connection: sa.Connection, sandbox: str, name: str) -> LabelRead:
    if name in STANDARD_LABELS:
        return _standard_read(name)
    row = connection.execute(sa.select(custom_labels).where(custom_labels.c.sandbox == sandbox,
                                                            custom_labels.c.name == name)).first()
    if row is None:
        raise NotFound.resource("label", name, sandbox)
    return _custom_read(row)


def create_label(*, connection: sa.Connection, sandbox: str, spec: LabelCreate) -> LabelRead:
    if spec.name.lower() in RESERVED_NAMES:
        raise Unprocessable(f"{spec.name!r} is a keyword of policy conditions and cannot be a label",
                            code="invalid_label", details={"name": spec.name})
    if spec.name in STANDARD_LABELS or connection.execute(sa.select(custom_labels.c.pk).where(
            custom_labels.c.sandbox == sandbox, custom_labels.c.name == spec.name)).first():
        kind = "a standard label" if spec.name in STANDARD_LABELS else f"a label of sandbox {sandbox!r}"
        raise Conflict(f"{spec.name!r} is already {kind}", code="label_exists", details={"name": spec.name})
    connection.execute(custom_labels.insert().values(sandbox=sandbox, name=spec.name, description=spec.description,
                                                     created_at=_now()))
    return get_label(connection=connection, sandbox=sandbox, name=spec.name)


def update_label(*, connection: sa.Connection, sandbox: str, name: str, spec: LabelUpdate) -> LabelRead:
    """Change a custom label's description (the meanings of standard labels are fixed)."""
    if name in STANDARD_LABELS:
        raise Conflict(f"{name!r} is a standard label; its meaning is fixed", code="standard_label",
                       details={"name": name})
    get_label(connection=connection, sandbox=sandbox, name=name)
    if "description" in spec.model_fields_set:
        connection.execute(custom_labels.update().where(custom_labels.c.sandbox == sandbox,
                                                        custom_labels.c.name == name)
                           .values(description=spec.description))
    return get_label(connection=connection, sandbox=sandbox, name=name)


def delete_label(*, connection: sa.Connection, sandbox: str, name: str) -> None:
    """Delete a custom label; 409 ``label_in_use`` while a policy names it (datasets may keep it:
    a label on data is a fact about the data)."""
    if name in STANDARD_LABELS:
        raise Conflict(f"{name!r} is a standard label; standard labels cannot be deleted", code="standard_label",
                       details={"name": name})
    get_label(connection=connection, sandbox=sandbox, name=name)
    users = [row.name for row in connection.execute(sa.select(policies.c.name, policies.c.deny_tree).where(
        policies.c.sandbox == sandbox).order_by(policies.c.name))
        if name in language.labels_of(language.from_json(row.deny_tree))]
    if users:
        raise Conflict(f"label {name!r} is named by the policies {', '.join(map(repr, users))}; change or delete "
                       "them first", code="label_in_use", details={"name": name, "policies": users})
    connection.execute(custom_labels.delete().where(custom_labels.c.sandbox == sandbox, custom_labels.c.name == name))


# ---- marketing actions -------------------------------------------------------------------------


def _core_read(key: str) -> MarketingActionRead:
    name, description = CORE_ACTIONS[key]
    return MarketingActionRead(key=key, name=name, description=description, core=True, created_at=None)


def _action_read(row) -> MarketingActionRead:
    return MarketingActionRead(key=row.key, name=row.name, description=row.description, core=False,
                               created_at=row.created_at)


def _action_rows(connection: sa.Connection, sandbox: str) -> list:
    return connection.execute(sa.select(marketing_actions).where(marketing_actions.c.sandbox == sandbox)
                              .order_by(marketing_actions.c.key)).all()


def list_marketing_actions(*, connection: sa.Connection, sandbox: str, limit: int,
                           offset: int) -> tuple[list[MarketingActionRead], int]:
    """The core actions (by key), then the custom ones (by key)."""
    found = [_core_read(key) for key in sorted(CORE_ACTIONS)] + [_action_read(r) for r in
                                                                 _action_rows(connection, sandbox)]
    return _page(found, limit, offset)


def get_marketing_action(*, connection: sa.Connection, sandbox: str, key: str) -> MarketingActionRead:
    if key in CORE_ACTIONS:
        return _core_read(key)
    row = connection.execute(sa.select(marketing_actions).where(marketing_actions.c.sandbox == sandbox,
                                                                marketing_actions.c.key == key)).first()
    if row is None:
        raise NotFound.resource("marketing action", key, sandbox)
    return _action_read(row)


def create_marketing_action(*, connection: sa.Connection, sandbox: str,
                            spec: MarketingActionCreate) -> MarketingActionRead:
    if spec.key in CORE_ACTIONS or connection.execute(sa.select(marketing_actions.c.pk).where(
            marketing_actions.c.sandbox == sandbox, marketing_actions.c.key == spec.key)).first():
        kind = "a core marketing action" if spec.key in CORE_ACTIONS else f"an action of sandbox {sandbox!r}"
        raise Conflict(f"{spec.key!r} is already {kind}", code="marketing_action_exists", details={"key": spec.key})
    connection.execute(marketing_actions.insert().values(sandbox=sandbox, key=spec.key, name=spec.name,
                                                         description=spec.description, created_at=_now()))
    return get_marketing_action(connection=connection, sandbox=sandbox, key=spec.key)


def update_marketing_action(*, connection: sa.Connection, sandbox: str, key: str,
                            spec: MarketingActionUpdate) -> MarketingActionRead:
    """Change a custom action's name or description (core actions are fixed)."""
    if key in CORE_ACTIONS:
        raise Conflict(f"{key!r} is a core marketing action; core actions cannot be changed",
                       code="core_marketing_action", details={"key": key})
    get_marketing_action(connection=connection, sandbox=sandbox, key=key)
    changes = spec.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise Unprocessable("name cannot be null", code="validation_error",
                            details={"errors": [{"loc": ["body", "name"], "message": "may not be null",
                                                 "type": "null"}]})
    if changes:
        connection.execute(marketing_actions.update().where(marketing_actions.c.sandbox == sandbox,
                                                            marketing_actions.c.key == key).values(**changes))
    return get_marketing_action(connection=connection, sandbox=sandbox, key=key)


def delete_marketing_action(*, connection: sa.Connection, sandbox: str, key: str) -> None:
    if key in CORE_ACTIONS:
        raise Conflict(f"{key!r} is a core marketing action; core actions cannot be deleted",
                       code="core_marketing_action", details={"key": key})
    get_marketing_action(connection=connection, sandbox=sandbox, key=key)
    users = connection.execute(sa.select(policies.c.name).where(policies.c.sandbox == sandbox,
                                                                policies.c.marketing_action == key)
                               .order_by(policies.c.name)).scalars().all()
    if users:
        raise Conflict(f"marketing action {key!r} is governed by the policies {', '.join(map(repr, users))}; "
                       "delete them first", code="marketing_action_in_use", details={"key": key, "policies": users})
    connection.execute(marketing_actions.delete().where(marketing_actions.c.sandbox == sandbox,
                                                        marketing_actions.c.key == key))


def _known_action(connection: sa.Connection, sandbox: str, key: str) -> str:
    """``key`` when it names a core or custom action; else 422 ``unknown_marketing_action``."""
    keys = set(CORE_ACTIONS) | {row.key for row in _action_rows(connection, sandbox)}
    if key in keys:
        return key
    close = difflib.get_close_matches(key, sorted(keys), n=3, cutoff=0.8)
    raise Unprocessable(f"unknown marketing action {key[:80]!r}" + (f" (did you mean {', '.join(map(repr, close))}?)"
                                                                    if close else ""),
                        code="unknown_marketing_action", details={"marketing_action": key[:80], "suggestions": close})


# ---- policies ----------------------------------------------------------------------------------


def _invalid_policy(error: language.PolicyError) -> Unprocessable:
    first = error.errors[0]
    more = f" (and {len(error.errors) - 1} more)" if len(error.errors) > 1 else ""
    return Unprocessable(f"invalid policy: {first.message}{more}", code="invalid_policy",
                         details={"field": "deny", "errors": [d.to_dict() for d in error.errors]})


def _condition(connection: sa.Connection, sandbox: str, text: str) -> language.Condition:
    try:
        return language.parse(text, known=known_labels(connection=connection, sandbox=sandbox))
    except language.PolicyError as error:
        raise _invalid_policy(error) from None


def _policy_read(row) -> PolicyRead:
    tree = language.from_json(row.deny_tree)
    return PolicyRead(id=row.pk, name=row.name, description=row.description, marketing_action=row.marketing_action,
                      deny=row.deny, deny_tree=row.deny_tree, labels=sorted(language.labels_of(tree)),
                      status=PolicyStatus(row.status), created_at=row.created_at, updated_at=row.updated_at)


def _policy_row(connection: sa.Connection, sandbox: str, policy_id: int):
    row = connection.execute(sa.select(policies).where(policies.c.pk == policy_id,
                                                       policies.c.sandbox == sandbox)).first()
    if row is None:
        raise NotFound.resource("policy", policy_id, sandbox)
    return row


def _name_taken(connection: sa.Connection, sandbox: str, name: str, exclude: int | None = None) -> None:
    query = sa.select(policies.c.pk).where(policies.c.sandbox == sandbox, policies.c.name == name)
    if exclude is not None:
        query = query.where(policies.c.pk != exclude)
    if connection.execute(query).first():
        raise Conflict(f"a policy named {name!r} exists in sandbox {sandbox!r}", code="policy_exists",
                       details={"name": name, "sandbox": sandbox})


def create_policy(*, connection: sa.Connection, sandbox: str, spec: PolicyCreate) -> PolicyRead:
    action = _known_action(connection, sandbox, spec.marketing_action)
    tree = _condition(connection, sandbox, spec.deny)
    _name_taken(connection, sandbox, spec.name)
    now = _now()
    pk = connection.execute(policies.insert().values(
        sandbox=sandbox, name=spec.name, description=spec.description, marketing_action=action,
        deny=language.render(tree), deny_tree=language.to_json(tree), status=spec.status.value, created_at=now,
        updated_at=now).returning(policies.c.pk)).scalar_one()
    return get_policy(connection=connection, sandbox=sandbox, policy_id=pk)


def get_policy(*, connection: sa.Connection, sandbox: str, policy_id: int) -> PolicyRead:
    return _policy_read(_policy_row(connection, sandbox, policy_id))


def list_policies(*, connection: sa.Connection, sandbox: str, limit: int, offset: int,
                  marketing_action: str | None = None, status: PolicyStatus | None = None,
                  label: str | None = None) -> tuple[list[PolicyRead], int]:
    """By id; only those of an action, of a status, or naming a label when asked."""
    where = [policies.c.sandbox == sandbox]
    if marketing_action is not None:
        where.append(policies.c.marketing_action == marketing_action)
    if status is not None:
        where.append(policies.c.status == status.value)
    if label is None:
        total = connection.execute(sa.select(sa.func.count()).select_from(policies).where(*where)).scalar_one()
        rows = connection.execute(sa.select(policies).where(*where).order_by(policies.c.pk).limit(limit)
                                  .offset(offset)).all()
        return [_policy_read(row) for row in rows], total
    reads = [_policy_read(row) for row in connection.execute(sa.select(policies).where(*where)
                                                             .order_by(policies.c.pk))]
    return _page([p for p in reads if label in p.labels], limit, offset)


def update_policy(*, connection: sa.Connection, sandbox: str, policy_id: int, spec: PolicyUpdate) -> PolicyRead:
    row = _policy_row(connection, sandbox, policy_id)
    changes = spec.model_dump(exclude_unset=True)
    for name in ("name", "marketing_action", "deny", "status"):
        if name in changes and changes[name] is None:
            raise Unprocessable(f"{name} cannot be null", code="validation_error",
                                details={"errors": [{"loc": ["body", name], "message": "may not be null",
                                                     "type": "null"}]})
    values: dict[str, Any] = {"updated_at": _now()}
    if "marketing_action" in changes:
        values["marketing_action"] = _known_action(connection, sandbox, changes["marketing_action"])
    if "deny" in changes:
        tree = _condition(connection, sandbox, changes["deny"])
        values["deny"], values["deny_tree"] = language.render(tree), language.to_json(tree)
    if "name" in changes:
        _name_taken(connection, sandbox, changes["name"], exclude=row.pk)
        values["name"] = changes["name"]
    if "description" in changes:
        values["description"] = changes["description"]
    if "status" in changes:
        values["status"] = PolicyStatus(changes["status"]).value
    connection.execute(policies.update().where(policies.c.pk == row.pk).values(**values))
    return get_policy(connection=connection, sandbox=sandbox, policy_id=row.pk)


def delete_policy(*, connection: sa.Connection, sandbox: str, policy_id: int) -> None:
    row = _policy_row(connection, sandbox, policy_id)
    connection.execute(policies.delete().where(policies.c.pk == row.pk))


# ---- evaluation --------------------------------------------------------------------------------


def _exported(attributes: Sequence[str], schema: Schema) -> list[str]:
    """Leaf paths of the exported attributes (an object path stands for the fields under it);
    422 ``invalid_attributes`` naming every unknown one, with the closest fields."""
    leaves: list[str] = []
    errors: list[str] = []
    for path in attributes:
        if path in schema.profile:
            leaves.append(path)
        elif path in schema.profile_objects:
            leaves += sorted(k for k in schema.profile if k.startswith(path + "."))
        else:
            close = Schema.closest(schema.profile, path)
            errors.append(f"{path[:120]!r} is not a profile attribute of the schema in force"
                          + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    if errors:
        raise Unprocessable(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                            code="invalid_attributes", details={"errors": errors})
    return sorted(set(leaves))


def _step(source: LabelSource) -> LineageStep:
    use = source.field
    return LineageStep(attribute=use.path, kind=use.kind, use=use.use,
                       dataset=DatasetRef(id=source.dataset_id, name=source.dataset_name), label=source.label,
                       level=source.level, via_segment=use.via_segment)


def evaluate(*, connection: sa.Connection, sandbox: str, schema: Schema, marketing_actions: Sequence[str],
             segment: str | None = None, expression: str | None = None,
             attributes: Sequence[str] = ()) -> list[PolicyDecision]:
    """One decision per marketing action for using a segment (by key) or an expression, with the
    ``attributes`` exported. Raises 404 (unknown segment), 422 (``invalid_expression``,
    ``unknown_segment``, ``invalid_attributes``, ``unknown_marketing_action``)."""
    from cdp.segments import service as segments

    if segment is not None and expression is not None:
        raise Unprocessable("give at most one of segment and expression", code="validation_error",
                            details={"errors": [{"loc": ["body"], "message": "segment and expression both given",
                                                 "type": "value_error"}]})
    actions = [_known_action(connection, sandbox, key) for key in marketing_actions]
    known = segments.catalogue(connection, sandbox)
    try:
        if segment is not None:
            if segment not in known:
                raise NotFound.resource("segment", segment, sandbox)
            tree = check(known[segment], schema)
        elif expression is not None:
            tree = segments.check_definition(expression=expression, key="", schema=schema, known=known,
                                             graph=segments.reference_graph(connection, sandbox))
        else:
            tree = None
        uses = fields_in_play(tree=tree, catalogue=known, schema=schema, attributes=_exported(attributes, schema))
    except PqlError as error:
        raise segments.invalid(error) from None
    lineage = label_lineage(connection=connection, sandbox=sandbox, uses=uses)
    decisions = decide(connection=connection, sandbox=sandbox, marketing_actions=actions, lineage=lineage)
    for decision in decisions:  # decisions are values; the log keeps each with what it was about
        # an ad-hoc expression's text is not logged, only its length: it can hold personal data
        # (`email = "jane@example.com"`); a saved segment is logged by key, attributes are schema paths
        log.info("policy decision in sandbox %r: %s %s for segment=%r expression=%s attributes=%r (labels %s; "
                 "violated policies: %s)", sandbox, decision.marketing_action,
                 "allowed" if decision.allowed else "denied", segment,
                 f"<{len(expression)} characters>" if expression is not None else None, list(attributes)[:50],
                 decision.labels, [f"{v.policy.id} {v.policy.name!r}" for v in decision.violations])
    return decisions


def decide(*, connection: sa.Connection, sandbox: str, marketing_actions: Sequence[str],
           lineage: Sequence[LabelSource]) -> list[PolicyDecision]:
    """Every enabled policy of each action, over the labels of ``lineage``."""
    labels = sorted({source.label for source in lineage})
    rows = connection.execute(sa.select(policies).where(
        policies.c.sandbox == sandbox, policies.c.status == PolicyStatus.enabled.value,
        policies.c.marketing_action.in_(sorted(set(marketing_actions)))).order_by(policies.c.pk)).all()
    decisions = []
    for action in marketing_actions:
        violations = []
        for row in rows:
            if row.marketing_action != action:
                continue
            why = language.because(language.from_json(row.deny_tree), labels)
            if why:
                violations.append(Violation(
                    policy=PolicyRef(id=row.pk, name=row.name, deny=row.deny), marketing_action=action,
                    labels=sorted(why), lineage=[_step(s) for s in lineage if s.label in why]))
        decisions.append(PolicyDecision(allowed=not violations, marketing_action=action, labels=labels,
                                        violations=violations))
    return decisions

