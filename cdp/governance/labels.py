"""Data-usage labels: the standard families and the rule for custom labels.

Standard (Adobe's DULE families): contract ``C1``–``C12``, identity ``I1``–``I2``, sensitive
``S1``–``S2``. Custom labels: a letter followed by up to 63 letters, digits, ``_`` or ``-``
(``PARTNER_ONLY``). Label names are case-sensitive; the standard ones are upper case. A label list
is stored sorted and without duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

STANDARD_LABELS: dict[str, str] = {
    **{f"C{n}": "contract" for n in range(1, 13)},
    "I1": "identity", "I2": "identity",
    "S1": "sensitive", "S2": "sensitive",
}
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def label_errors(labels: Iterable[str]) -> list[str]:
    """Why each invalid label is invalid (empty when all are valid)."""
    return [f"invalid label {label[:80]!r}: a label is a letter then up to 63 letters, digits, '_' or '-'"
            for label in labels if not _LABEL.fullmatch(label)]


def normalize(labels: Iterable[str]) -> list[str]:
    return sorted(set(labels))


def family(label: str) -> str:
    """``contract``, ``identity``, ``sensitive`` or ``custom``."""
    return STANDARD_LABELS.get(label, "custom")
