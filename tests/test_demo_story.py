"""`cdp demo` plays the Luma story (SPEC.md steps 1–9) through a real `cdp serve` it starts — on
SQLite and on PostgreSQL — and every step's outcome is checked in its `--json` transcript, not only
its exit code. Also: `--url` against a running server, `--step N`, the same story twice (only
ids and times differ), the narration's colour rules, and the data `cdp serve --demo` (`make run`)
starts with."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import httpx2 as httpx
import pytest

from tests.api.test_server import KEY, Server, _environment

PROFILES = "150"


def _demo(*args: str, env: dict | None = None, timeout: float = 600) -> tuple[int, dict, str]:
    result = subprocess.run([sys.executable, "-c", "from cdp.cli import main; main()", "demo", "--json", *args],
                            capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def transcript(request, sqlite_url_factory) -> dict:
    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    code, played, stderr = _demo("--database-url", url, "--profiles", PROFILES)
    assert code == 0 and played["ok"], (played.get("error"), stderr)
    return played


def _facts(transcript: dict, number: int) -> dict:
    [step] = [s for s in transcript["steps"] if s["step"] == number]
    assert "error" not in step["facts"], step
    return step["facts"]


def test_every_step_ran_in_order(transcript):
    assert [s["step"] for s in transcript["steps"]] == list(range(10))
    assert all(s["sent"] and s["decided"] for s in transcript["steps"] if not s["facts"].get("skipped"))


def test_the_data_arrives_from_files_and_streams(transcript):
    facts = _facts(transcript, 0)
    assert facts["profiles"] > int(PROFILES) and facts["streamed"]["web"]["accepted"] > 0
    assert facts["streamed"]["mobile"]["accepted"] > 0 and facts["streamed"]["web"]["rejected"] == 0


def test_1_the_anonymous_visitor_has_a_profile_of_her_cookie(transcript):
    facts = _facts(transcript, 1)
    assert facts["identities"] == ["ecid:ecid-7f3a"] and facts["events"] == 2 and facts["accepted"] == 2


def test_2_the_login_merges_the_browsing_into_sarahs_crm_profile(transcript):
    facts = _facts(transcript, 2)
    assert facts["merged"] and facts["profile_id"] == facts["known_profile"] != facts["anonymous_profile"]
    assert any("merged" in w and facts["anonymous_profile"] in w for w in facts["warnings"])
    assert facts["attributes"] == {"loyalty.tier": "bronze", "preferred_category": "womens", "preferred_size": "S"}
    assert facts["events"] == 4


def test_3_any_identity_finds_the_one_profile(transcript):
    facts = _facts(transcript, 3)
    assert facts["one_profile"] and len(facts["found"]) == 4
    assert set(facts["identities"]) == {"crm_id:C-1001", "email:sarah.rose@example.com", "loyalty_id:L-1001",
                                        "ecid:ecid-7f3a"}
    assert {(e["type"], e["channel"], e["device"]) for e in facts["events"]} == {
        ("productView", "web", "desktop"), ("addToCart", "web", "desktop"), ("login", "web", "desktop")}
    assert facts["memberships"] == [{"segment": "window-shoppers", "status": "realized"}]
    assert facts["provenance"]["loyalty.tier"] == "Loyalty members"
    assert facts["provenance"]["preferred_size"] == "CRM contacts"


def test_4_bad_rows_are_reported_with_row_number_and_reason(transcript):
    facts = _facts(transcript, 4)
    assert {k: (b["status"], b["rejected_rows"]) for k, b in facts["batches"].items()} == {
        "crm": ("succeeded", 4), "loyalty": ("succeeded", 3)}
    reasons = {(r["file"], r["column"]): r["reason"] for r in facts["rejected"]}
    assert "31/02/1988" in reasons["crm_contacts.csv", "Birth Date"]
    assert "'Narnia' is not an allowed value" in reasons["crm_contacts.csv", "Country"]
    assert "did you mean 'XXL'" in reasons["crm_contacts.csv", "Preferred Size"]
    assert "not an email address" in next(v for (f, c), v in reasons.items() if c and "Email" in c)
    assert "'diamond' is not an allowed value" in reasons["loyalty_members.jsonl", "tier"]
    assert "'1,200'" in reasons["loyalty_members.jsonl", "points"]
    assert "not JSON" in reasons["loyalty_members.jsonl", None]
    assert all(r["row_number"] > 1 for r in facts["rejected"])


def test_5_labels_and_policies(transcript):
    facts = _facts(transcript, 5)
    crm = facts["datasets"]["CRM contacts"]
    assert crm["labels"] == ["C2"] and crm["field_labels"]["home_address.street"] == ["S1"]
    assert facts["datasets"]["Loyalty members"]["labels"] == ["LOYALTY_TERMS"]
    assert {(p["marketing_action"], p["deny"]) for p in facts["policies"]} == {
        ("export_to_third_party", "C2"), ("email_targeting", "C4 OR (I1 AND S1)"), ("segment_match", "LOYALTY_TERMS")}


def test_6_sarah_qualifies_and_a_cart_enters_at_once(transcript):
    facts = _facts(transcript, 6)
    assert facts["valid"] and facts["sarah"] == {"qualifies": True, "status": "realized"}
    assert facts["size_at_save"] == facts["estimate"] >= 1
    assert facts["explain"][0]["value"] == "TRUE" and len(facts["explain"]) > 3
    assert facts["mia"]["status"] == "realized" and facts["mia"]["segment_jobs_since"] == 0
    assert facts["size"] == facts["size_at_save"] + 1


def test_7_activation_is_refused_with_its_lineage_then_runs_with_consent(transcript):
    facts = _facts(transcript, 7)
    assert not facts["skipped"], facts  # the step skips only against a cdp without activation (--url)
    [violation] = facts["refused"]["violations"]
    assert violation["marketing_action"] == "email_targeting" and violation["policy"]["deny"] == "C4 OR (I1 AND S1)"
    assert {(v["attribute"], v["dataset"]["name"], v["label"]) for v in violation["lineage"]} >= {
        ("person.first_name", "CRM contacts", "I1"), ("home_address.street", "CRM contacts", "S1")}
    email, display = facts["activations"]["Luma Email"], facts["activations"]["Google Display"]
    assert email["status"] == display["status"] == "active"
    assert email["sarah_sent"] and display["sarah_sent"]
    assert not email["mia_sent"] and display["mia_sent"] and email["excluded_no_consent"] >= 1


def test_8_the_purchase_exits_her_at_once(transcript):
    facts = _facts(transcript, 8)
    assert facts["status"] == "exited" and facts["exited_at"]
    assert facts["size"] == facts["size_before"] - 1
    assert "ecid:ecid-9c2e" in facts["identities"]
    assert sorted(facts["removals"]) == ["Google Display", "Luma Email"]  # she is not retargeted


def test_9_the_audience_over_time(transcript):
    facts = _facts(transcript, 9)
    sizes = [s["size"] for s in facts["sizes"]]
    assert sizes == [sizes[0], sizes[0] + 1, sizes[0]]
    assert facts["history"] and facts["history"][-1]["size"] == sizes[-1]
    assert sum(p["exited"] for p in facts["history"]) >= 1
    assert set(facts["deliveries"]) == {"Google Display", "Luma Email"}
    assert all(d["status"] == "delivered" for items in facts["deliveries"].values() for d in items)
    assert all(sum(d["changes"] for d in items) >= 2 for items in facts["deliveries"].values())  # entries, her exit


_VARYING = re.compile(r'p-[0-9a-f]{32}|\d{4}-\d\d-\d\dT[\d:.]+Z?|/v1/(datasets|batches|destinations)/\d+|'
                      r'\(\d+(\.\d+)? m?s\b|luma-demo(-\d+)?|"(id|destination_id|job_id)": \d+')


def _stable(steps: list[dict]) -> str:
    """The transcript without what differs between two plays: profile and dataset ids, times."""
    steps = json.loads(json.dumps(steps))
    for step in steps:
        step.pop("seconds")
        step["facts"].pop("seconds", None)
        if step["step"] == 0:
            step["facts"].pop("datasets")
    return _VARYING.sub("…", json.dumps(steps, sort_keys=True))


def test_the_story_against_a_running_server_twice_stops_at_the_step_and_tells_the_same(sqlite_url_factory,
                                                                                       tmp_path):
    server = Server(sqlite_url_factory(), tmp_path / "serve.log")
    try:
        [key] = KEY.findall(server.stderr)
        env = {**_environment(server.url), "CDP_DEMO_KEY": key}
        first = _demo("--url", server.base, "--step", "4", "--profiles", "100", env=env)
        second = _demo("--url", server.base, "--step", "4", "--profiles", "100", env=env)
    finally:
        server.stop()
    assert first[0] == second[0] == 0
    assert (first[1]["sandbox"], second[1]["sandbox"]) == ("luma-demo", "luma-demo-2")
    assert [s["step"] for s in first[1]["steps"]] == [0, 1, 2, 3, 4]
    assert _stable(first[1]["steps"]) == _stable(second[1]["steps"])


def test_the_demo_needs_a_key_for_a_url():
    code, played, _stderr = _demo("--url", "http://127.0.0.1:9", env=_environment("sqlite://"))
    assert code == 1 and not played["ok"] and "--url needs an admin key" in played["error"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    from cdp.demo.narrate import Narrator, use_colour
    from cdp.demo.story import Step

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(_Terminal()) and not use_colour(io.StringIO()) and not use_colour(_Terminal(), forced_off=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(_Terminal())
    out, progress = io.StringIO(), _Terminal()
    narrator = Narrator(out, progress, colour=True)
    narrator.start(2, "merge")
    narrator.progress("streaming")
    narrator.step(Step(2, "merge", sent=["a"], decided=["b"], why=["c"]))
    assert "\033[" in out.getvalue() and "step 2/9 · merge · streaming" in progress.getvalue()
    plain = io.StringIO()
    Narrator(plain, io.StringIO(), colour=False).step(Step(2, "merge", sent=["a"], decided=["b"], why=["c"]))
    assert "\033[" not in plain.getvalue() and "  cdp     b" in plain.getvalue()


def test_make_run_data_is_loaded_through_the_service(sqlite_url_factory, tmp_path):
    """`cdp serve --demo` on an empty database: Luma's files and streams, the segments and policies."""
    server = Server(sqlite_url_factory(), tmp_path / "serve.log", args=["--demo"], timeout=300)
    try:
        [key] = KEY.findall(server.stderr)
        headers = {"Authorization": f"Bearer {key}"}

        def get(path: str, **params):
            response = httpx.get(server.base + path, headers=headers, params=params, timeout=60)
            assert response.status_code == 200, response.text
            return response.json()

        datasets = {d["id"]: d["name"] for d in get("/v1/datasets")["items"]}
        assert datasets == {1: "CRM contacts", 2: "Web and mobile events", 3: "Loyalty members"}
        batches = [b for d in (1, 3) for b in get(f"/v1/datasets/{d}/batches")["items"]]
        assert [(b["status"], b["rejected_rows"]) for b in batches] == [("succeeded", 4), ("succeeded", 3)]
        assert batches[0]["accepted_rows"] > 1500
        sarah = get("/v1/profiles/lookup", namespace="email", id="Sarah.Rose@example.com")
        assert {m["segment"] for m in sarah["memberships"]} >= {"gift-giving-cart-abandoners"}
        assert get("/v1/profiles/lookup", namespace="ecid", id="ecid-7f3a")["id"] == sarah["id"]
        segments = {s["key"]: s["size"] for s in get("/v1/segments")["items"]}
        assert set(segments) == {"gift-giving-cart-abandoners", "high-value-loyalists", "email-engaged",
                                 "window-shoppers"} and all(segments.values())
        assert get("/v1/policies")["total"] == 3
        activations = {a["destination_name"]: a for a in get("/v1/activations")["items"]}
        assert set(activations) == {"Google Display", "Luma Email"}
        assert all(a["status"] == "active" and a["segment"] == "gift-giving-cart-abandoners"
                   for a in activations.values())
        assert "loaded the Luma demo data into sandbox prod" in server.stderr
        keys = get("/v1/keys")["items"]
        assert [k["revoked_at"] is not None for k in keys if k["name"].startswith("demo data loader")] == [True]
    finally:
        server.stop()
