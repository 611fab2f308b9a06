"""Identity-graph linking rules: one person per graph.

A sandbox names **unique namespaces** (default ``crm_id``, ``loyalty_id``): a graph holds at most
one identity of each. It orders all namespaces by **priority** (default ``crm_id``,
``loyalty_id``, ``email``, ``phone``, custom person namespaces, custom device namespaces, then
``ecid`` and custom cookie namespaces; custom ones by code within their kind).

The graph's edges are **links**: two identities carried by one record, with when the link was
last seen (the time of ingestion, then the record's place in its write). The rule
(:func:`evaluate`, written down in docs/identity.md):

1. a link's *class* is the priority of the lower-priority namespace of its two identities;
2. links are taken in order of class (highest priority first), within a class the newest first
   (ties: by the two identities, namespace then value);
3. a link is kept unless the two graphs it would join hold different identities of one unique
   namespace — then it is removed, with that as its reason;
4. the profiles are the connected components of the kept links (an identity with no kept link is
   a profile of its own).

So the newest link is always kept (a record carries at most one identity of each unique namespace,
else it is rejected) and the older links that conflict with it go, the lowest-priority namespace
first: a shared laptop's cookie follows the person who logged in last. This module is pure (no
database): ingestion, the re-evaluation job and ``POST /v1/identity/simulate`` share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from cdp.identity.namespaces import Namespace, NamespaceKind

Identity = tuple[str, str]  # (namespace, value)

_DEFAULT_HEAD = ("crm_id", "loyalty_id", "email", "phone")
_KIND_ORDER = {NamespaceKind.person: 0, NamespaceKind.device: 1, NamespaceKind.cookie: 2}


def priority_order(namespaces: Mapping[str, Namespace], explicit: Iterable[str] | None = None) -> list[str]:
    """Every namespace code, the highest priority first: ``explicit`` ones in their order, then the
    others in the default order."""
    default = [code for code in _DEFAULT_HEAD if code in namespaces] + sorted(
        (code for code in namespaces if code not in _DEFAULT_HEAD),
        key=lambda code: (_KIND_ORDER[namespaces[code].kind], code != "ecid", code))
    head = [code for code in (explicit or ()) if code in namespaces]
    return head + [code for code in default if code not in head]


@dataclass(frozen=True)
class Rules:
    unique: frozenset[str]
    rank: Mapping[str, int]  # namespace → its place in the priority order (0: the highest)

    @classmethod
    def of(cls, namespaces: Mapping[str, Namespace], unique: Iterable[str], priority: Iterable[str] | None) -> Rules:
        order = priority_order(namespaces, priority)
        return cls(frozenset(unique), {code: place for place, code in enumerate(order)})

    def ranked(self, identity: Identity) -> tuple[int, str, str]:
        """Sort key: the higher-priority identity first (then namespace and value)."""
        return (self.rank.get(identity[0], len(self.rank)), identity[0], identity[1])

    def top(self, identities: Iterable[Identity]) -> Identity:
        return min(identities, key=self.ranked)

    def doubled(self, identities: Iterable[Identity]) -> str | None:
        """A unique namespace of which ``identities`` hold two values (a record that cannot be linked)."""
        seen: dict[str, str] = {}
        for namespace, value in identities:
            if namespace in self.unique and seen.setdefault(namespace, value) != value:
                return namespace
        return None


@dataclass
class Link:
    """An edge of the graph: ``a`` < ``b``; ``seen`` orders links in time (larger: newer)."""

    a: Identity
    b: Identity
    seen: tuple
    key: Any = None  # the caller's handle (a stored link's key)
    reason: str | None = None  # why it was removed (set by evaluate)

    @staticmethod
    def between(x: Identity, y: Identity, seen: tuple, key: Any = None) -> Link:
        a, b = (x, y) if x <= y else (y, x)
        return Link(a, b, seen, key)


def record_links(identities: list[Identity], seen: tuple) -> list[Link]:
    """The links of one record: every two of its identities, seen together at ``seen``."""
    return [Link.between(x, y, seen) for x, y in combinations(identities, 2)]


@dataclass
class Outcome:
    kept: list[Link] = field(default_factory=list)
    removed: list[Link] = field(default_factory=list)  # each with its reason
    components: list[set[Identity]] = field(default_factory=list)
    component_of: dict[Identity, int] = field(default_factory=dict)


def evaluate(nodes: Iterable[Identity], links: Iterable[Link], rules: Rules) -> Outcome:
    """Apply the rule to a graph: which links stay, which go (and why), and the profiles."""
    parent: dict[Identity, Identity] = {}
    holds: dict[Identity, dict[str, str]] = {}  # root → unique namespace → its value in that graph

    def add(node: Identity) -> None:
        if node not in parent:
            parent[node] = node
            holds[node] = {node[0]: node[1]} if node[0] in rules.unique else {}

    def find(node: Identity) -> Identity:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node in nodes:
        add(node)
    unranked = len(rules.rank)

    def order(link: Link) -> tuple:
        klass = max(rules.rank.get(link.a[0], unranked), rules.rank.get(link.b[0], unranked))
        return (klass, _newest_first(link.seen), link.a, link.b)

    outcome = Outcome()
    for link in sorted(links, key=order):
        add(link.a)
        add(link.b)
        ra, rb = find(link.a), find(link.b)
        if ra == rb:
            link.reason = None
            outcome.kept.append(link)
            continue
        clash = next((ns for ns, value in holds[ra].items() if holds[rb].get(ns, value) != value), None)
        if clash is not None:
            link.reason = (f"unique namespace {clash}: keeping this link would put {clash} {holds[ra][clash]!r} and "
                           f"{holds[rb][clash]!r} in one graph; newer or higher-priority links were kept")
            outcome.removed.append(link)
            continue
        link.reason = None
        parent[rb] = ra
        holds[ra].update(holds.pop(rb))
        outcome.kept.append(link)
    groups: dict[Identity, set[Identity]] = {}
    for node in parent:
        groups.setdefault(find(node), set()).add(node)
    outcome.components = sorted(groups.values(), key=lambda group: rules.ranked(rules.top(group)))
    outcome.component_of = {node: index for index, group in enumerate(outcome.components) for node in group}
    return outcome


def apply_records(records: Iterable[tuple[list[Identity], tuple]], rules: Rules,
                  links: Iterable[Link] = (), nodes: Iterable[Identity] = ()) -> Outcome:
    """The rule applied one record after the other, as ingestion does: each record's links (seen
    at its ``seen``) join the links kept so far and the rule runs again; a link removed stays
    removed until a record carries it again. ``links``/``nodes``: a graph to start from."""
    nodes = list(nodes)
    kept = {(link.a, link.b): link for link in links}
    removed: dict[tuple[Identity, Identity], Link] = {}
    for identities, seen in records:
        nodes += identities
        for link in record_links(identities, seen):
            kept[(link.a, link.b)] = link
            removed.pop((link.a, link.b), None)
        step = evaluate(nodes, list(kept.values()), rules)
        removed.update(((link.a, link.b), link) for link in step.removed)
        kept = {(link.a, link.b): link for link in step.kept}
    outcome = evaluate(nodes, list(kept.values()), rules)
    removed.update(((link.a, link.b), link) for link in outcome.removed)
    outcome.removed = list(removed.values())
    return outcome


class _Reversed:
    """Wraps a sort key so that larger sorts first (any comparable ``seen``)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and other.value == self.value


def _newest_first(seen: tuple) -> _Reversed:
    return _Reversed(seen)
