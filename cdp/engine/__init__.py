"""Compilers and evaluation: checked PQL trees to in-memory predicates (cdp/engine/memory/, its
code generation split by node family) and to SQL (cdp/engine/sql/, one class per dialect over one
visitor; docs/backends.md). Engines sit above storage: the SQL backend compiles over its tables
and loads profile documents into them (sql/loading.py); the values' run-time semantics they
share with SQLite's functions are the language's (cdp/dsl/runtime.py)."""

from cdp.engine.memory import compile_predicate, explain
from cdp.engine.profile import LoadedProfile, ProfileError, load_profile
from cdp.engine.support import UnsupportedOnBackend, check_for_backend, require_support

__all__ = ["compile_predicate", "explain", "load_profile", "LoadedProfile", "ProfileError",
           "UnsupportedOnBackend", "check_for_backend", "require_support"]
