"""Real components the tests need (PostgreSQL today; a browser, Java for Spark later): a test that
cannot have one is skipped on a developer's machine, but where the component is required it
FAILS, so coverage cannot vanish from a green run.

A component NAME is required when ``CDP_REQUIRE_<NAME>`` is set to 1/true/yes (``.ci/run`` sets
``CDP_REQUIRE_POSTGRES=1``) or when ``CI`` is true (what CI services set): in CI every component
is required, never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}


def component_required(name: str, environ: os._Environ | dict | None = None) -> bool:
    environ = os.environ if environ is None else environ
    flag = f"CDP_REQUIRE_{name.upper()}"
    return environ.get(flag, "").strip().lower() in _TRUE or environ.get("CI", "").strip().lower() in _TRUE


def require_component(name: str, start: Callable[[], T], *, hint: str = "") -> T:
    """What ``start()`` returns (a started or found component). When it raises, the test is
    skipped — or fails when the component is required (see the module doc). The reason is
    printed either way."""
    try:
        return start()
    except Exception as exc:  # noqa: BLE001 - any failure to start means "unavailable", reported in full
        reason = f"{name} unavailable: {exc}".strip() + (f" ({hint})" if hint else "")
        flag = f"CDP_REQUIRE_{name.upper()}"
        if component_required(name):
            pytest.fail(f"{reason}\n{name} is required here ({flag}=1 or CI=true): the tests that need it fail "
                        f"instead of being skipped", pytrace=False)
        pytest.skip(f"SKIPPING {name} tests: {reason}; set {flag}=1 to make this a failure")
