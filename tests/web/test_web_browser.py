"""The web interface (docs/web.md) in a real browser: Debian's Chromium driven by Playwright, against
a real ``cdp serve --demo`` on a free local port. A marketer signs in, types a segment with a
mistake and sees it underlined with its position and hint, fixes it and sees the canonical form and
the estimate, saves it, finds Sarah Rose and sees her identities and events, and asks why she is in
the segment. Screenshots of each view are written for review (the path is printed).

The browser is a component (tests/components.py): without Chromium or Playwright these tests skip
on a developer's machine and FAIL where it is required (``CDP_REQUIRE_BROWSER=1``, set by .ci/run,
or ``CI=true``). Never ``playwright install``: the browser is the system's (``CDP_CHROMIUM`` or
/usr/bin/chromium)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.api.test_server import KEY, Server
from tests.components import require_component
from tests.receiver import Receiver

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--headless"]
TIMEOUT_MS = 15_000
SECRET = "web-test-secret-0123456789"


def _chromium() -> str:
    path = os.environ.get("CDP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        raise FileNotFoundError(f"no Chromium at {path}")
    return path


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run."""
    state = {}

    def start():
        from playwright.sync_api import sync_playwright

        executable = _chromium()
        state["playwright"] = sync_playwright().start()
        try:
            return state["playwright"].chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        except Exception:
            state["playwright"].stop()
            raise

    running = require_component("browser", start, hint="Debian: apt-get install chromium; pip install playwright "
                                                        "(never `playwright install`); or set CDP_CHROMIUM")
    yield running
    running.close()
    state["playwright"].stop()


@pytest.fixture(scope="module")
def server(sqlite_url_factory, tmp_path_factory):
    running = Server(sqlite_url_factory(), tmp_path_factory.mktemp("web") / "serve.log", args=["--demo"], timeout=300)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_key(server) -> str:
    [key] = KEY.findall(server.stderr)
    return key


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CDP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=server.base)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    opened.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
              if message.type == "error" and "status of 4" not in message.text else None)
    yield opened
    context.close()
    assert not problems, problems  # a script error is a broken page, even when the steps passed


def _sign_in(page, key: str) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    _expect()(page.get_by_role("heading", name="Audiences")).to_be_visible()  # signed in: the audiences are shown


def _editor(page):
    """The segment editor view and its PQL editor (CodeMirror's content element, labelled)."""
    page.get_by_role("navigation", name="Views").get_by_role("button", name="Segment editor").click()
    editor = page.get_by_label("PQL expression")
    _expect()(editor).to_be_visible()
    return editor


def _expect():
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # a shared 2-core machine can be slow
    return expect


AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"  # axe-core, from web/package-lock.json


def _accessible(page) -> None:
    """axe-core's WCAG 2 A and AA rules over the page as it is now (labels, names, roles,
    contrast, …): no violation. Injected through the DevTools protocol, as a test tool, not by the page."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate("""async () => {
        const result = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21aa"] } });
        return result.violations.map((v) => `${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`);
    }""")
    assert not found, found


def _chart_points(page, canvas_id: str) -> list[tuple[float, float, float]]:
    """The size line's points as Chart.js placed them (x, y in CSS pixels, value), each checked to
    be painted on the canvas: the chart has points, not just data."""
    return page.evaluate("""async (id) => {
        const { Chart } = await import("/ui/static/vendor/chartjs.js");
        const canvas = document.getElementById(id);
        const chart = Chart.getChart(canvas);
        const context = canvas.getContext("2d");
        const ratio = chart.currentDevicePixelRatio;
        return chart.getDatasetMeta(0).data.map((point, index) => {
            const [r, g, b, a] = context.getImageData(Math.round(point.x * ratio), Math.round(point.y * ratio), 1, 1).data;
            if (a === 0) throw new Error(`point ${index} is not painted`);
            return [point.x, point.y, chart.data.datasets[0].data[index]];
        });
    }""", canvas_id)


def test_the_page_is_served_by_the_service_itself(server):
    response = httpx.get(server.base + "/", follow_redirects=True)
    assert response.status_code == 200 and str(response.url).endswith("/ui")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    # the editor's style sheet is allowed by a nonce, new on every response and handed to the page
    [nonce] = re.findall(r"'nonce-([^']+)'", policy)
    assert f'<meta name="csp-nonce" content="{nonce}">' in response.text
    assert nonce not in httpx.get(server.base + "/ui").headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', response.text):
        assert httpx.get(server.base + asset).status_code == 200, asset
    assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere


def test_a_wrong_key_shows_the_structured_error(page, admin_key):
    expect = _expect()
    page.goto("/")
    page.get_by_label("API key").fill(admin_key[:-2] + "xx")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    expect(error).to_contain_text("invalid_api_key")
    _accessible(page)
    expect(page.get_by_role("navigation", name="Views")).to_be_hidden()


def test_a_marketer_writes_saves_and_explains_a_segment(page, server, admin_key, screenshots):
    expect = _expect()
    _sign_in(page, admin_key)
    expect(page.get_by_label("Sandbox")).to_have_value("prod")
    nav = page.get_by_role("navigation", name="Views")
    assert page.evaluate("sessionStorage.getItem('cdp.key')") == admin_key

    # a mistake, typed key by key: underlined at its span, with its position and hint
    editor = _editor(page)
    editor.press_sequentially("loyalty.points == 100", delay=15)
    errors = page.get_by_role("list", name="Expression errors")
    expect(errors).to_contain_text("line 1, column 16")
    expect(errors).to_contain_text("unexpected `==`")
    expect(errors).to_contain_text("Hint: use `=` to test equality")
    expect(page.locator("#pql .cm-lintRange-error")).to_have_text("==")
    expect(page.locator("#pql .tok-number")).to_have_text("100")
    expect(page.locator("#pql .tok-keyword")).to_have_count(0)
    page.locator("#pql .cm-lintRange-error").hover()  # the message and hint at the span itself
    expect(page.locator(".cm-tooltip-lint")).to_contain_text("Hint: use `=` to test equality")
    expect(page.get_by_label("Canonical form")).to_have_text("")
    expect(page.get_by_label("Estimated audience")).to_have_text("")
    page.screenshot(path=str(screenshots / "editor-error.png"), full_page=True)
    _accessible(page)

    # fixed: no error, the canonical form and the estimate the API gives
    editor.press("Home")
    for _ in range(len("loyalty.points ")):
        editor.press("ArrowRight")
    editor.press("Delete")
    editor.type(">")
    expect(editor).to_have_text("loyalty.points >= 100")
    expect(page.get_by_label("Canonical form")).to_have_text("loyalty.points >= 100")
    expect(page.locator("#pql .cm-lintRange")).to_have_count(0)
    answer = httpx.post(server.base + "/v1/segments/estimate", headers={"Authorization": "Bearer " + admin_key},
                        json={"expression": "loyalty.points >= 100"}).json()
    assert answer["count"] > 0
    expect(page.get_by_label("Estimated audience")).to_have_text(
        f"{answer['count']:,} of {answer['total_profiles']:,} profiles")
    page.get_by_text("Sample of members").click()
    expect(page.get_by_role("list", name="Sample of members").get_by_role("button")).to_have_text(answer["sample"][:10])
    page.screenshot(path=str(screenshots / "editor.png"), full_page=True)
    _accessible(page)

    # saved: in the audiences, with its size, status and evaluation mode
    page.get_by_label("Segment key").fill("loyal-members")
    page.get_by_label("Segment name").fill("Loyal members")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("#save-result")).to_contain_text("Saved segment loyal-members.")
    page.locator("#save-result").get_by_role("button", name="Activate it").click()  # save, then activate
    expect(page.get_by_label("Segment to activate")).to_have_value("loyal-members")
    expect(page.get_by_label("Segment to activate")).to_be_focused()
    nav.get_by_role("button", name="Segment editor").click()
    # saving it again: the API's structured error, not a blank page
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("#save-result .error-code")).to_have_text(re.compile(r"\w+"))
    expect(page.locator("#save-result")).to_contain_text("loyal-members")
    editor.fill("")
    expect(page.get_by_label("Canonical form")).to_have_text("")
    nav.get_by_role("button", name="Audiences").click()
    saved = httpx.get(server.base + "/v1/segments/loyal-members", headers={"Authorization": "Bearer " + admin_key}).json()
    row = page.get_by_role("table", name="Segments").get_by_role("row").filter(has_text="loyal-members")
    expect(row).to_contain_text("Loyal members")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("batch")
    expect(row).to_contain_text(f"{saved['size']:,}")
    # its chart: size, entries and exits per hour, the points the API gives, drawn
    row.get_by_role("button", name="Show the history of loyal-members").click()
    expect(page.locator("#history-title")).to_have_text("Size over time: loyal-members")
    history = httpx.get(server.base + "/v1/segments/loyal-members/history",
                        headers={"Authorization": "Bearer " + admin_key}).json()
    assert history["points"], history  # saving evaluates it: its first point
    drawn = _chart_points(page, "history-chart")
    assert [value for _, _, value in drawn] == [p["size"] for p in history["points"]], drawn
    page.get_by_text("The chart's data as a table").click()
    table = page.get_by_role("table", name="Segment history")
    expect(table.get_by_role("row")).to_have_count(1 + len(history["points"]))
    expect(table.get_by_role("row").nth(1)).to_contain_text(str(history["points"][0]["entered"]))
    page.screenshot(path=str(screenshots / "audiences.png"), full_page=True)
    _accessible(page)
    # opened from the list: its expression back in the editor
    row.get_by_role("button", name="Open segment loyal-members in the editor").click()
    expect(editor).to_have_text("loyalty.points >= 100")
    expect(page.get_by_label("Canonical form")).to_have_text("loyalty.points >= 100")

    # Sarah Rose: found by name, her identities and her events on a timeline
    nav.get_by_role("button", name="Profiles").click()
    page.get_by_label("Search profiles").fill("Sarah")
    page.get_by_role("button", name="Search").click()
    results = page.get_by_role("list", name="Search results")
    expect(results).to_contain_text("sarah.rose@example.com")
    results.get_by_role("listitem").filter(has_text="sarah.rose@example.com").get_by_role("button").click()
    profile = page.get_by_role("article", name="Profile")
    expect(profile.get_by_role("heading", name="Sarah Rose")).to_be_visible()
    identities = profile.get_by_role("table", name="Identities")
    expect(identities).to_contain_text("sarah.rose@example.com")
    expect(identities).to_contain_text("ecid-7f3a")
    events = profile.get_by_role("list", name="Event timeline").get_by_role("listitem")
    stored = httpx.get(server.base + "/v1/profiles/lookup", headers={"Authorization": "Bearer " + admin_key},
                       params={"namespace": "email", "id": "sarah.rose@example.com"}).json()
    assert stored["events"], "the demo's Sarah Rose has events"
    expect(profile).to_contain_text(f"{len(stored['identities'])} identities linked in one identity graph")
    expect(events).to_have_count(len(stored["events"]))
    times = [events.nth(i).locator("time").get_attribute("datetime") for i in range(events.count())]
    assert times == sorted(times, reverse=True), times  # newest first
    expect(profile.get_by_role("table", name="Attributes")).to_contain_text("person.first_name")
    page.screenshot(path=str(screenshots / "profile.png"), full_page=True)
    _accessible(page)

    # an identity that does not exist: the structured error
    page.get_by_label("Identity namespace").fill("email")
    page.get_by_label("Identity value").fill("nobody@example.com")
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#profiles-error .error-code")).to_have_text("not_found")
    expect(page.locator("#profiles-error")).to_contain_text("no profile with that email identity")
    expect(profile).to_be_visible()  # the profile shown before stays

    # why: the engine's explanation, part by part
    nav.get_by_role("button", name="Why").click()
    page.get_by_label("Segment", exact=True).select_option("loyal-members")
    expect(page.get_by_label("Profile id")).to_have_value(stored["id"])
    page.get_by_role("button", name="Explain").click()
    verdict = httpx.post(server.base + "/v1/evaluate", headers={"Authorization": "Bearer " + admin_key},
                         json={"segment": "loyal-members", "profile_id": stored["id"], "explain": True}).json()
    expect(page.locator("#why-result")).to_contain_text(
        "The profile qualifies." if verdict["qualifies"] else "The profile does not qualify.")
    rows = page.get_by_role("list", name="Explanation").get_by_role("listitem")
    expect(rows).to_have_count(len(verdict["explain"]))
    expect(rows.first).to_contain_text(verdict["explain"][0]["expression"])
    page.screenshot(path=str(screenshots / "why.png"), full_page=True)
    _accessible(page)

    # from a membership of the profile: the same explanation
    nav.get_by_role("button", name="Profiles").click()
    memberships = page.get_by_role("region", name="Memberships")
    assert verdict["qualifies"], verdict  # she has 120 points
    expect(memberships).to_contain_text("loyal-members")
    memberships.get_by_role("button", name="Why is this profile in loyal-members?").click()
    expect(page.get_by_label("Segment", exact=True)).to_have_value("loyal-members")
    expect(page.locator("#why-result")).to_contain_text("The profile qualifies.")
    expect(page.get_by_role("list", name="Explanation").get_by_role("listitem")).to_have_count(len(verdict["explain"]))


def test_names_functions_and_segment_keys_are_completed(page, server, admin_key, screenshots):
    expect = _expect()
    created = httpx.post(server.base + "/v1/segments", headers={"Authorization": "Bearer " + admin_key},
                         json={"key": "gold-tier", "name": "Gold tier", "expression": 'loyalty.tier = "gold"'})
    assert created.status_code in (201, 409), created.text
    _sign_in(page, admin_key)
    editor = _editor(page)
    suggestions = page.get_by_role("listbox", name="Completions")
    labels = suggestions.locator(".cm-completionLabel")
    # a field of the schema in force
    editor.press_sequentially("loyalty.ti", delay=15)
    expect(labels).to_have_text(["loyalty.tier"])
    page.screenshot(path=str(screenshots / "completion.png"))  # (also lets CodeMirror's 75 ms pass)
    _accessible(page)
    editor.press("Tab")
    expect(editor).to_have_text("loyalty.tier")
    expect(suggestions).to_be_hidden()
    editor.press_sequentially(' = "gold"', delay=15)
    expect(page.get_by_label("Canonical form")).to_have_text('loyalty.tier = "gold"')  # checked as before
    # a function, with its signature
    editor.press_sequentially(" and upp", delay=15)
    expect(labels).to_have_text(["upper"])
    expect(suggestions).to_contain_text("upper(")
    page.wait_for_timeout(150)  # CodeMirror ignores Enter in the first 75 ms of a list (a fast typist's Enter)
    editor.press("Enter")
    editor.press_sequentially('person.last_name) = "ROSE"', delay=10)
    expect(page.get_by_label("Canonical form")).to_have_text('loyalty.tier = "gold" and upper(person.last_name) = "ROSE"')
    # a segment key of the sandbox
    editor.press_sequentially(' and in segment "gol', delay=15)
    expect(labels.first).to_have_text("gold-tier")  # the best match first (the demo has segments of its own)
    page.wait_for_timeout(150)
    editor.press("Tab")
    expect(editor).to_contain_text('in segment "gold-tier"')
    expect(page.get_by_label("Canonical form")).to_contain_text('in segment "gold-tier"')
    # the keyboard is never trapped: Escape closes a list, Tab (no list open) leaves the editor
    editor.press("End")  # past the closing quote the editor added
    editor.press_sequentially(" and lo", delay=15)
    expect(suggestions).to_be_visible()
    editor.press("Escape")
    expect(suggestions).to_be_hidden()
    editor.press("Tab")
    assert page.evaluate("!document.activeElement.closest('.cm-editor')"), "Tab left the editor"
    expect(editor).to_contain_text('"gold-tier" and lo')  # and inserted nothing


def test_what_a_role_may_not_do_is_not_offered(page, server, admin_key):
    expect = _expect()
    created = httpx.post(server.base + "/v1/keys", headers={"Authorization": "Bearer " + admin_key},
                         json={"name": "web reader", "role": "reader"})
    assert created.status_code == 201, created.text
    _sign_in(page, created.json()["key"])
    expect(page.locator("#whoami")).to_have_text("web reader (reader)")
    _editor(page)
    expect(page.get_by_role("button", name="Save segment")).to_be_hidden()
    expect(page.locator("#save-not-allowed")).to_have_text("Your role (reader) may check and estimate segments, "
                                                          "not save them.")
    page.get_by_label("PQL expression").press_sequentially('loyalty.tier = "gold"', delay=10)
    expect(page.get_by_label("Canonical form")).to_have_text('loyalty.tier = "gold"')  # checking is for everyone
    page.get_by_role("navigation", name="Views").get_by_role("button", name="Activation").click()
    expect(page.get_by_role("button", name="Activate")).to_be_hidden()
    expect(page.locator("#activate-not-allowed")).to_have_text("Your role (reader) may see activations, not create them.")
    expect(page.get_by_role("table", name="Activations")).to_be_visible()  # reading is for everyone
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_have_value("")
    assert page.evaluate("sessionStorage.getItem('cdp.key')") is None
    _sign_in(page, admin_key)
    expect(page.locator("#whoami")).to_contain_text("(admin)")
    _editor(page)
    expect(page.get_by_role("button", name="Save segment")).to_be_visible()
    expect(page.locator("#save-not-allowed")).to_be_hidden()


def test_a_key_bound_to_one_sandbox_works_there(page, server, admin_key):
    expect = _expect()
    admin = {"Authorization": "Bearer " + admin_key}
    assert httpx.post(server.base + "/v1/sandboxes", headers=admin, json={"name": "webtest"}).status_code == 201
    created = httpx.post(server.base + "/v1/keys", headers={**admin, "X-Sandbox": "webtest"},
                         json={"name": "webtest marketer", "role": "marketer"})
    assert created.status_code == 201, created.text
    _sign_in(page, created.json()["key"])
    expect(page.get_by_label("Sandbox").get_by_role("option")).to_have_text(["webtest"])
    expect(page.locator("#whoami")).to_have_text("webtest marketer (marketer)")
    expect(page.get_by_role("table", name="Segments")).to_contain_text("No segments yet.")  # its own sandbox's
    expect(page.locator("#global-error")).to_be_empty()


def test_a_marketer_activates_a_segment_sees_the_refusal_the_deliveries_and_the_data_flow(page, server, admin_key,
                                                                                            screenshots):
    """The demo's refused activation (SPEC.md story step 7): its CRM dataset labels
    `person.first_name` I1 and `home_address.street` S1, and its policy "No email targeting with
    precise location" denies email targeting on `C4 OR (I1 AND S1)`; exporting both to Luma Email
    is refused, with the paths first name → CRM contacts → I1 → the policy and street → CRM
    contacts → S1 → the policy. Without the street it is allowed (here onto an email destination
    of the test's own, a real receiver), its consent exclusions counted and its deliveries logged;
    the data-flow graph draws it all."""
    expect = _expect()
    admin = {"Authorization": "Bearer " + admin_key}
    policy = "No email targeting with precise location"
    demo = {d["name"]: d for d in httpx.get(server.base + "/v1/destinations", headers=admin).json()["items"]}
    assert "Luma Email" in demo, demo  # the demo's destinations
    before = httpx.get(server.base + "/v1/activations", headers=admin).json()["total"]
    receiver = Receiver(SECRET)
    try:
        created = httpx.post(server.base + "/v1/destinations", headers=admin, json={
            "name": "Web test email", "type": "webhook", "marketing_actions": ["email_targeting"],
            "consent": "consents.email", "config": {"url": receiver.url, "secret": SECRET}})
        assert created.status_code == 201, created.text
        destinations = {"Web test email": created.json()}
        segment = httpx.post(server.base + "/v1/segments", headers=admin, json={
            "key": "gold-members", "name": "Gold members", "expression": 'loyalty.tier = "gold"'})
        assert segment.status_code == 201, segment.text

        _sign_in(page, admin_key)
        nav = page.get_by_role("navigation", name="Views")
        nav.get_by_role("button", name="Activation").click()
        page.get_by_label("Segment to activate").select_option("gold-members")
        page.get_by_role("group", name="Destinations").get_by_label("Luma Email").check()
        attributes = page.get_by_role("group", name="Mapped attributes")
        attributes.get_by_label("email", exact=True).check()
        attributes.get_by_label("person.first_name").check()
        attributes.get_by_label("home_address.street").check()
        page.get_by_role("group", name="Identities sent").get_by_label("email", exact=True).check()
        page.get_by_role("button", name="Activate").click()

        # refused: the violated policy, and the lineage drawn as a path
        refused = page.locator("#activate-result .refused")
        expect(refused).to_contain_text("policy_violation")
        expect(refused).to_contain_text("Nothing was created or sent.")
        violations = page.get_by_role("list", name="Violated policies")
        expect(violations).to_contain_text(policy)
        expect(violations).to_contain_text("email_targeting")
        expect(violations).to_contain_text("C4 OR (I1 AND S1)")
        for field, label in (("person.first_name", "I1"), ("home_address.street", "S1")):
            path = page.get_by_role("list", name=f"{field} to {policy}")
            expect(path.get_by_role("listitem")).to_have_text([re.compile(rf"exported field\s*{re.escape(field)}"),
                                                               re.compile(r"dataset\s*CRM contacts"),
                                                               re.compile(rf"field label\s*{label}"),
                                                               re.compile(rf"policy\s*{policy}")])
        assert httpx.get(server.base + "/v1/activations", headers=admin).json()["total"] == before  # nothing created
        page.screenshot(path=str(screenshots / "activation-refused.png"), full_page=True)
        _accessible(page)

        # without the street, onto the test's email destination: allowed, listed with what was sent
        # and who was left out for want of consent
        page.get_by_role("group", name="Destinations").get_by_label("Luma Email").uncheck()
        page.get_by_role("group", name="Destinations").get_by_label("Web test email").check()
        attributes.get_by_label("home_address.street").uncheck()
        page.get_by_role("button", name="Activate").click()
        expect(page.locator("#activate-result")).to_contain_text("Activated gold-members on Web test email: active")
        [activation] = [a for a in httpx.get(server.base + "/v1/activations", headers=admin).json()["items"]
                        if a["destination_name"] == "Web test email"]
        assert activation["attributes"] == ["email", "person.first_name"] and activation["identities"] == ["email"]
        delivered = _wait_for_delivery(server, admin, destinations["Web test email"]["id"])
        activation = httpx.get(server.base + f"/v1/activations/{activation['id']}", headers=admin).json()
        assert activation["members_exported"] > 0 and activation["excluded_no_consent"] > 0  # some lack email consent
        page.get_by_role("button", name="Refresh").last.click()
        row = page.get_by_role("table", name="Activations").get_by_role("row").filter(has_text="Web test email")
        expect(row).to_contain_text("gold-members")
        expect(row.get_by_role("cell").nth(3)).to_have_text(f"{activation['members_exported']:,}")
        expect(row.get_by_role("cell").nth(4)).to_have_text(f"{activation['excluded_no_consent']:,}")
        # the delivery log of the destination
        row.get_by_role("button", name="Delivery log of Web test email").click()
        log = page.get_by_role("table", name="Delivery log")
        deliveries = httpx.get(server.base + f"/v1/destinations/{destinations['Web test email']['id']}/deliveries",
                               headers=admin).json()["items"]
        expect(log.get_by_role("row")).to_have_count(1 + len(deliveries))  # newest first, as the API lists them
        first = log.get_by_role("row").nth(1).get_by_role("cell")
        expect(first.nth(1)).to_have_text(deliveries[0]["status"])
        expect(first.nth(3)).to_have_text(str(deliveries[0]["changes"]))
        expect(first.nth(4)).to_have_text(str(deliveries[0]["excluded_no_consent"]))
        expect(log).to_contain_text("delivered")
        assert delivered["changes"] > 0
        receiver.wait(lambda: receiver.changes())  # signed, as the receiver checks
        assert receiver.bad_signatures == 0
        page.screenshot(path=str(screenshots / "activation.png"), full_page=True)
        _accessible(page)

        # the data flow: datasets → segments → activations → destinations, drawn and listed
        nav.get_by_role("button", name="Data flow").click()
        flow = httpx.get(server.base + "/v1/dataflow", headers=admin).json()
        page.get_by_text("The graph as a list").click()
        listed = page.get_by_role("list", name="Data flow").get_by_role("listitem")
        expect(listed).to_have_count(len(flow["edges"]))
        expect(page.get_by_role("list", name="Data flow")).to_contain_text("→ segment Gold members")
        expect(page.get_by_role("list", name="Data flow")).to_contain_text(
            "activation Gold members → Web test email → destination Web test email")
        expect(page.locator("#dataflow-graph canvas").first).to_be_attached()  # Cytoscape.js loaded on first use
        drawn = page.evaluate("""async () => {
            const { views } = await import("/ui/static/api.js");
            const graph = views.dataflow.graph();
            return { nodes: graph.nodes().map((n) => n.id()).sort(), edges: graph.edges().length };
        }""")
        assert drawn == {"nodes": sorted(n["id"] for n in flow["nodes"]), "edges": len(flow["edges"])}, drawn
        assert page.evaluate("""() => [...document.querySelectorAll("#dataflow-graph canvas")].some((canvas) => {
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
            return false;
        })"""), "the graph is painted"
        page.get_by_role("list", name="Data flow").get_by_role("button", name="destination Web test email").first.click()
        expect(page.get_by_role("region", name="Node details")).to_contain_text("email_targeting")
        page.screenshot(path=str(screenshots / "dataflow.png"), full_page=True)
        _accessible(page)
    finally:
        receiver.stop()


def _wait_for_delivery(server, headers: dict, destination: int) -> dict:
    """The first delivered delivery of a destination (deliveries run in the service, shortly after)."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = httpx.get(server.base + f"/v1/destinations/{destination}/deliveries", headers=headers).json()["items"]
        done = [d for d in items if d["status"] == "delivered"]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no delivery within 30 s: {items}")
