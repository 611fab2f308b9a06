"""cdp — the open-source core of a real-time customer data platform."""

__version__ = "0.1.0"
