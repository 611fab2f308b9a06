"""The function registry: one record per built-in function (DSL.md §10).

Each record holds the function's signature, its null behaviour, its documentation and example,
its Python form and (per dialect) its SQL form. Adding a function means adding one record in
one of the modules below and one conformance case.
"""

from cdp.functions.registry import Function, Param, all_functions, lookup, register

__all__ = ["Function", "Param", "all_functions", "lookup", "register"]
