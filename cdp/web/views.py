"""Serves the web interface: ``/ui`` is the page, ``/ui/static`` its files (package data: the
page's own modules and the committed library bundles in ``static/vendor``; no CDN, nothing built at
run time), ``/`` redirects to ``/ui``. No API key is needed to load the page; every call it makes
to ``/v1`` carries the key the user signs in with."""

from __future__ import annotations

import secrets
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

STATIC = files("cdp.web") / "static"
UI = "/ui"

# The page loads only its own files and talks only to its own origin. The one exception is the
# editor's style sheet: CodeMirror writes its theme into a <style> element, allowed by a nonce new on
# every response (the page hands it to CodeMirror from a meta tag); no inline script is allowed.
_CSP = ("default-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'")
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def install(app: FastAPI) -> None:
    app.mount(UI + "/static", StaticFiles(directory=str(STATIC)), name="web-static")

    # plain Starlette routes, as the docs pages: not API endpoints (no key, no OpenAPI entry)
    async def page(_request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        text = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{csp_nonce}}", nonce)
        return HTMLResponse(text, headers={**_HEADERS, "Content-Security-Policy": _CSP.format(nonce=nonce)})

    async def home(_request: Request) -> RedirectResponse:
        return RedirectResponse(UI, status_code=307)

    app.add_route(UI, page, include_in_schema=False)
    app.add_route("/", home, include_in_schema=False)
