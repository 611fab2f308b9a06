"""The Luma scenario (SPEC.md): a deterministic generator of profile documents (``generator``);
Luma's sources as its systems export them (``luma``); their loader over HTTP (``load``, ``seed``:
``make run``'s data); and ``cdp demo`` (``story``, ``activation``, ``receiver``, ``narrate``,
``run``), which plays the story's nine steps through a real service.

    from cdp.demo import generate_profiles
    for document in generate_profiles(1000, seed=7):
        ...

The same generator feeds ``cdp demo``, the in-memory benchmarks (bench/) and the SQL benchmarks,
so that every number in the project is measured on the same kind of data. As a command:
``python -m cdp.demo.generator --count 1000 > profiles.jsonl``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdp.demo.generator import DEFAULT_AS_OF, generate_profiles, write_jsonl

__all__ = ["DEFAULT_AS_OF", "generate_profiles", "write_jsonl"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m cdp.demo.generator` runs the module only once.
    if name in __all__:
        from cdp.demo import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'cdp.demo' has no attribute {name!r}")
