"""Serves the web interface: ``/ui`` is the page, ``/ui/static`` its files (package data, no CDN,
no build step), ``/`` redirects to ``/ui``. No API key is needed to load the page; every call it
makes to ``/v1`` carries the key the user signs in with."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

STATIC = files("cdp.web") / "static"
UI = "/ui"

# The page loads only its own files and talks only to its own origin.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def install(app: FastAPI) -> None:
    app.mount(UI + "/static", StaticFiles(directory=str(STATIC)), name="web-static")

    # plain Starlette routes, as the docs pages: not API endpoints (no key, no OpenAPI entry)
    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=_HEADERS)

    async def home(_request: Request) -> RedirectResponse:
        return RedirectResponse(UI, status_code=307)

    app.add_route(UI, page, include_in_schema=False)
    app.add_route("/", home, include_in_schema=False)
