"""The Luma data generator: deterministic, schema-conformant, prefix-stable, never after as_of."""

import json

from cdp.demo.generator import DEFAULT_AS_OF, generate_profiles
from cdp.engine import compile_predicate, load_profile


def test_same_seed_same_documents_and_prefix_stable():
    first = list(generate_profiles(300, seed=7))
    assert json.dumps(first) == json.dumps(list(generate_profiles(300, seed=7)))
    assert json.dumps(first[:120]) == json.dumps(list(generate_profiles(120, seed=7)))
    assert json.dumps(first) != json.dumps(list(generate_profiles(300, seed=8)))


def test_documents_fit_the_schema_and_history():
    documents = list(generate_profiles(500))
    loaded = [load_profile(d) for d in documents]  # raises ProfileError on any type mismatch
    assert len({p.id for p in loaded}) == 500
    for profile in loaded:
        assert all(e["timestamp"] <= DEFAULT_AS_OF for e in profile.events)
    gift = compile_predicate((__import__("pathlib").Path(__file__).resolve().parents[1]
                              / "examples" / "gift_giving_cart_abandoners.pql").read_text())
    members = [p.id for p in loaded if gift(p, DEFAULT_AS_OF)]
    assert 0 < len(members) < 100  # the generator plants some gift-giving cart abandoners


def test_luma_sources_are_the_generated_people_as_their_systems_export_them():
    import csv
    import io
    from datetime import datetime, timezone

    from cdp.demo.luma import CRM_COLUMNS, luma_sources

    as_of = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    sources = luma_sources(200, as_of=as_of)
    assert luma_sources(200, as_of=as_of) == sources  # deterministic
    rows = list(csv.DictReader(io.StringIO(sources.crm_csv)))
    assert list(rows[0]) == CRM_COLUMNS and len(rows) == sources.crm_rows
    sarah = next(r for r in rows if r["Contact ID"] == "C-1001")
    assert (sarah["Email"].strip().lower(), sarah["Preferred Category"], sarah["Preferred Size"]) == (
        "sarah.rose@example.com", "Womens", "S")
    lines = sources.loyalty_jsonl.splitlines()
    assert json.loads(lines[0])["tier"] == "Bronze" and len(lines) == sources.loyalty_rows
    # the broken rows sit where expected_rejections says (CSV rows count the header as row 1)
    for file, number in sources.expected_rejections:
        if file == "crm":
            assert rows[number - 2]["Contact ID"].startswith("C-900")
        else:
            assert "L-900" in lines[number - 1]
    assert len(sources.expected_rejections) == 7
    events = sources.web_events + sources.mobile_events
    assert len({r["event"]["id"] for r in events}) == len(events)
    assert all(r["event"]["timestamp"] <= "2026-12-01T12:00:00Z" for r in events)
    assert all(r["event"].get("channel") == "mobile" for r in sources.mobile_events)
