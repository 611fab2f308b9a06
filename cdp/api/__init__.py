"""The HTTP service: ``create_app()`` builds it (cdp/api/app.py); ``cdp serve`` runs it."""

from cdp.api.app import create_app

__all__ = ["create_app"]
