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


def test_demo_seed_loads_once_into_an_empty_sandbox(sqlite_url_factory):
    from cdp.demo.seed import seed_demo_data
    from cdp.engine import sql
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(sqlite_url_factory())
    upgrade(engine)
    assert seed_demo_data(engine, generated=50) == 53  # the three examples/ profiles and 50 generated
    assert seed_demo_data(engine, generated=50) == 0  # never twice
    gift = (__import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "gift_giving_cart_abandoners.pql").read_text()
    from cdp.profiles.lookup import find_by_identity, read_profile
    from cdp.schema import luma_schema

    with engine.connect() as connection:
        sarah = find_by_identity(connection=connection, sandbox="prod", namespace="email",
                                 value="Sarah.Rose@example.com")
        profile = read_profile(connection=connection, sandbox="prod", profile_pk=sarah, schema=luma_schema())
        assert profile.attributes["loyalty"]["tier"] == "bronze" and profile.events_total >= 2
        assert profile.provenance["loyalty.tier"].dataset_name == "CRM contacts"
        assert profile.id in sql.evaluate(connection, gift, as_of=DEFAULT_AS_OF)
    engine.dispose()
