"""API keys and roles.

Roles, from most to least powerful — each endpoint declares the roles it allows (see
cdp/api/deps.py ``require``; the OpenAPI document lists them per operation as ``x-roles``):

* ``admin`` — everything, including managing keys;
* ``data_steward`` — schemas, datasets, labels (and everything a marketer can do);
* ``marketer`` — segments, audiences, activations (later issues);
* ``reader`` — read-only.

Keys (cdp/auth/service.py): ``cdp_<id>_<secret>``; only a SHA-256 of the whole key is stored; the
key is shown once, when it is created. Send it as ``Authorization: Bearer <key>``.
"""

from cdp.auth.roles import ALL_ROLES, Role

__all__ = ["ALL_ROLES", "Role"]
