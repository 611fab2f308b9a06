"""Demo data for the Luma scenario (SPEC.md): a deterministic generator of profile documents.

    from cdp.demo import generate_profiles
    for document in generate_profiles(1000, seed=7):
        ...

The same generator feeds ``cdp demo``, the in-memory benchmarks (bench/) and the SQL benchmarks,
so that every number in the project is measured on the same kind of data.
"""

from cdp.demo.generator import DEFAULT_AS_OF, generate_profiles, write_jsonl

__all__ = ["DEFAULT_AS_OF", "generate_profiles", "write_jsonl"]
