"""The function registry: one record per built-in function (DSL.md §10).

Each record holds the function's signature, its null behaviour, its documentation and example,
its Python form and (per dialect) its SQL form. Adding a function means adding one record in
one of the modules below and one conformance case (docs/language.md, "Adding a function").
"""

from cdp.functions.registry import (
    BACKENDS, Function, Param, all_functions, lookup, python_udf, register, registered, unregister,
)

__all__ = ["BACKENDS", "Function", "Param", "all_functions", "lookup", "python_udf", "register",
           "registered", "unregister"]
