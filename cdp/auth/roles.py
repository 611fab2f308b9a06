from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    data_steward = "data_steward"
    marketer = "marketer"
    reader = "reader"


ALL_ROLES: tuple[Role, ...] = tuple(Role)
