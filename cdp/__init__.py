"""cdp — the open-source core of a real-time customer data platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdp")  # the installed package's metadata: one source, pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
