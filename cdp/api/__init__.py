"""The HTTP service, the top layer: ``create_app()`` builds it (cdp/api/app.py) from the routes of
cdp/api/routes/ and the shared dependencies (deps.py), errors, pagination and middleware;
``cdp serve`` runs it."""

from cdp.api.app import create_app

__all__ = ["create_app"]
