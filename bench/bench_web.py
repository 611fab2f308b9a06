"""The web page (docs/web.md), measured in Debian's Chromium driven by Playwright against a real
``cdp serve --demo`` on a free local port (a throwaway SQLite file):

- what the page can download: the page, its modules, styles and library bundles, raw and gzip'd
  (the service sends them uncompressed; gzip is what a proxy in front would send); Cytoscape.js
  only when the Data flow view is first opened;
- a cold load to the sign-in form (navigation start → DOMContentLoaded and load, no cache);
- sign-in → the Audiences view shown;
- type → estimate: an expression set in the editor → the estimate on screen. The reference is
  what the page waits on — the same two API calls (check, then estimate) made directly with
  httpx — plus the editor's 250 ms debounce; the difference is the page's own cost.

    bash bench/run_web.sh [--repeats 15] [--record]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
STATIC = ROOT / "cdp" / "web" / "static"
SIZE = re.compile(r" of [0-9,]+ profiles")
DEBOUNCE_MS = 250
WATCH = """() => {
    const estimate = document.getElementById("estimate");
    estimate.textContent = "";
    let started = null;
    document.addEventListener("beforeinput", () => { started = started ?? performance.now(); }, { capture: true, once: true });
    window.cdpBench = new Promise((resolve) => {
        const observer = new MutationObserver(() => {
            if (/ of [0-9,]+ profiles/.test(estimate.textContent)) { observer.disconnect(); resolve(performance.now() - started); }
        });
        observer.observe(estimate, { childList: true, characterData: true, subtree: true });
    });
}"""  # cdp/web/static/segments.js
EXPRESSIONS = ['loyalty.tier = "gold"', "loyalty.points >= 100", 'home_address.country = "US" and lifetime_value > 200',
               'interests has any ["running", "yoga"]', 'exists event where type = "purchase" within last 30 days']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder: Path) -> tuple[subprocess.Popen, str, str]:
    port = _free_port()
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "cdp.cli", "serve", "--demo", "--port", str(port),
                                "--log-level", "warning", "--database-url", f"sqlite:///{folder / 'web.db'}"],
                               stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise SystemExit(f"cdp serve did not start: {(folder / 'serve.log').read_text()[-2000:]}")
    key = re.search(r"cdp_[A-Za-z0-9_\-]+", (folder / "serve.log").read_text()).group(0)
    return process, base, key


def _weights(base: str) -> list[tuple[str, int, int]]:
    page = httpx.get(base + "/ui").text
    names = ["/ui"] + re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page)
    for module in (STATIC).glob("*.js"):
        names.append(f"/ui/static/{module.name}")
        names += [f"/ui/static/{m}" for m in re.findall(r'(?:from |import\()"\./([^"]+)"', module.read_text())]
    rows = []
    for name in dict.fromkeys(names):
        body = httpx.get(base + name).content
        rows.append((name, len(body), len(gzip.compress(body, 6))))
    return rows


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} (min {min(values):.0f}, max {max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    args = parser.parse_args()
    chromium = os.environ.get("CDP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import expect, sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="cdp-bench-web-"))
    process, base, key = _serve(folder)
    try:
        weights = _weights(base)
        headers = {"Authorization": "Bearer " + key}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu", "--headless"])
            loads, dcls, signins, typed = [], [], [], []
            for _ in range(args.repeats):
                context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=base)
                page = context.new_page()
                page.goto("/ui")
                timing = page.evaluate("JSON.parse(JSON.stringify(performance.getEntriesByType('navigation')[0]))")
                dcls.append(timing["domContentLoadedEventEnd"])
                loads.append(timing["loadEventEnd"])
                page.get_by_label("API key").fill(key)
                started = time.perf_counter()
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("table", name="Segments").wait_for()
                page.locator("#segments-table tbody tr").first.wait_for()
                signins.append((time.perf_counter() - started) * 1000)
                page.get_by_role("button", name="Segment editor").click()
                estimate = page.get_by_label("Estimated audience")
                for expression in EXPRESSIONS:
                    # timed inside the page: from the editor's first input event to the estimate's text
                    page.evaluate(WATCH)
                    page.get_by_label("PQL expression").fill(expression)
                    expect(estimate).to_have_text(SIZE)
                    typed.append(page.evaluate("() => window.cdpBench"))
                context.close()
            browser.close()
        direct = []
        with httpx.Client(base_url=base, headers=headers) as client:
            for _ in range(args.repeats):
                for expression in EXPRESSIONS:
                    started = time.perf_counter()
                    assert client.post("/v1/expressions/check", json={"expression": expression}).status_code == 200
                    assert client.post("/v1/segments/estimate", json={"expression": expression}).status_code == 200
                    direct.append((time.perf_counter() - started) * 1000)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    raw, packed = sum(r[1] for r in weights), sum(r[2] for r in weights)
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_web.py " + " ".join(sys.argv[1:])
    lines = [f"## Web page (docs/web.md), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"- command: `{command}`",
             f"- Chromium {subprocess.run([chromium, '--version'], capture_output=True, text=True).stdout.strip()}, "
             f"`cdp serve --demo` on SQLite (1,000+ profiles), {args.repeats} fresh browser contexts, "
             f"{len(EXPRESSIONS)} expressions each; medians in ms", "",
             "| what | figure |", "|---|---|",
             f"| every file the page may load: files / bytes (raw) / bytes (gzip) | {len(weights)} / {raw:,} / {packed:,} |",
             *[f"| &nbsp; {name} | {size:,} / {small:,} gzip |" for name, size, small in weights if size > 20_000],
             f"| cold load: DOMContentLoaded | {_ms(dcls)} |",
             f"| cold load: load | {_ms(loads)} |",
             f"| sign in → Audiences listed | {_ms(signins)} |",
             f"| expression set → estimate on screen | {_ms(typed)} |",
             f"| reference: the same check + estimate over HTTP, + the {DEBOUNCE_MS} ms debounce | "
             f"{statistics.median(direct) + DEBOUNCE_MS:.0f} ({statistics.median(direct):.0f} + {DEBOUNCE_MS}) |",
             f"| the page's own cost per estimate (median difference) | "
             f"{statistics.median(typed) - statistics.median(direct) - DEBOUNCE_MS:.0f} |", ""]
    report = "\n".join(lines)
    print(report)
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + report)
        print(f"(appended to {RESULTS.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
