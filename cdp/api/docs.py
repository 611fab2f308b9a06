"""The API docs pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with every file they load
served by the service itself from an installed package (fastapi-offline ships Swagger UI 5 —
needed for an OpenAPI 3.1 document — and ReDoc), so they work on a machine without internet.
FastAPI's own pages load them from a CDN. No API key is needed."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    # plain Starlette routes, as FastAPI's own docs pages: not API endpoints (no key, no OpenAPI entry)
    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png",
                                   # no badge fetched from validator.swagger.io
                                   swagger_ui_parameters={"validatorUrl": None})

    async def redoc(_request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
