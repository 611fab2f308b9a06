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


# Title and meaning of each standard label (docs/governance.md), after Adobe's core data-usage labels.
STANDARD_MEANINGS: dict[str, tuple[str, str]] = {
    "C1": ("Aggregated export only", "Data may leave the platform only in aggregated form, without individual or "
                                     "device identifiers."),
    "C2": ("No export to a third party", "Data may not be exported to a third party (a data provider's contract "
                                         "may forbid it)."),
    "C3": ("No combination with directly identifiable information", "Data may not be combined or used with "
                                                                     "directly identifiable information (PII)."),
    "C4": ("No onsite or cross-site ad targeting", "Data may not be used to target ads, on the organisation's own "
                                                   "sites and apps or across sites."),
    "C5": ("No cross-site targeting based on interests", "Data may not be used for interest-based targeting of "
                                                         "content or ads across sites."),
    "C6": ("No onsite ad targeting", "Data may not be used to target ads on the organisation's own sites and apps."),
    "C7": ("No onsite content targeting", "Data may not be used to personalise content on the organisation's own "
                                          "sites and apps."),
    "C8": ("No measurement", "Data may not be used to measure the organisation's sites or apps (analytics)."),
    "C9": ("No data science", "Data may not be used in data science workflows (models, recommendations)."),
    "C10": ("No stitched-identity activation", "Data may be activated only on the identity it was collected "
                                               "with, not through the identity graph."),
    "C11": ("No segment match", "Data may not be shared with segment-match partners."),
    "C12": ("No export of any kind", "Data may not leave the platform in any form."),
    "I1": ("Directly identifiable", "Data that identifies or contacts a specific person: a name, an email "
                                    "address, a phone number."),
    "I2": ("Indirectly identifiable", "Data that identifies a person or device only when combined with other "
                                      "data: a cookie id, a device id, a customer id."),
    "S1": ("Precise location", "Latitude and longitude precise enough to place a device."),
    "S2": ("Broad location", "A broadly defined area: a city, a postal code, a geofence."),
}
RESERVED_NAMES = frozenset({"and", "or"})  # keywords of the policy language (any case)
