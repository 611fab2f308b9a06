"""Compilers and evaluation: checked PQL trees to in-memory predicates (and to SQL)."""

from cdp.engine.memory import compile_predicate, explain
from cdp.engine.profile import LoadedProfile, ProfileError, load_profile
from cdp.engine.support import UnsupportedOnBackend, check_for_backend, require_support

__all__ = ["compile_predicate", "explain", "load_profile", "LoadedProfile", "ProfileError",
           "UnsupportedOnBackend", "check_for_backend", "require_support"]
