"""The fields a checked PQL tree reads (cdp/governance/lineage.py), the first step of lineage."""

from __future__ import annotations

import pytest

from cdp.dsl import check
from cdp.governance.lineage import FieldUse, fields_in_play, fields_read
from cdp.schema import luma_schema

P, E = "profile", "event"


@pytest.mark.parametrize("expression, expected", [
    ('loyalty.tier = "gold"', {(P, "loyalty.tier")}),
    ("loyalty.points + lifetime_value > 3 and email is not null",
     {(P, "loyalty.points"), (P, "lifetime_value"), (P, "email")}),
    ('exists event where type = "purchase"', {(E, "type")}),
    ('exists event where type = "addToCart" and product.size != profile.preferred_size within last 7 days',
     {(E, "type"), (E, "product.size"), (P, "preferred_size"), (E, "timestamp")}),
    ("exists event within last 7 days", {(E, "timestamp")}),
    ("exists event", {(E, "id")}),
    ("count(event) >= 3", {(E, "id")}),
    ("count(event where channel = \"web\") >= 3", {(E, "channel")}),
    ("sum(event.order.total) > 100", {(E, "order.total")}),
    ('last(event.product.sku where type = "purchase") = "x"', {(E, "product.sku"), (E, "type"), (E, "timestamp")}),
    ('exists event as cart where type = "addToCart" then no event where type = "purchase" and '
     'order.id = cart.product.sku within 1 day',
     {(E, "type"), (E, "order.id"), (E, "product.sku"), (E, "timestamp")}),
    ("exists event then event", {(E, "timestamp")}),
    ('no event where type = "purchase" within last 30 days', {(E, "type"), (E, "timestamp")}),
    ('in segment "gold"', set()),
    ("true", set()),
])
def test_fields_read(expression, expected):
    assert fields_read(check(expression, luma_schema())) == expected


def test_fields_in_play_through_references_and_exports():
    catalogue = {"gold": 'loyalty.tier = "gold" and in segment "opted-in"', "opted-in": "email_opt_in"}
    tree = check('in segment "gold" and loyalty.tier is not null', luma_schema())
    uses = fields_in_play(tree=tree, catalogue=catalogue, schema=luma_schema(), attributes=["email"])
    assert uses == [FieldUse(P, "email", "export"), FieldUse(P, "email_opt_in", "read", "opted-in"),
                    FieldUse(P, "loyalty.tier", "read"), FieldUse(P, "loyalty.tier", "read", "gold")]
