"""Schemathesis hooks for tests/api/test_openapi_fuzz.py: one check on top of the built-in ones.

A request that the OpenAPI document allows may still break a rule the document cannot state —
the expression does not check, a field path is not in the sandbox's schema, a dataset named in a
setting does not exist. Those are 422s with the rule's own code (DOMAIN_CODES). What must never
answer a schema-valid request is a rejection of its shape: 400, 415 or 422 with any other code
(``validation_error``, ``invalid_json``, ``invalid_sandbox`` …) — that would mean the document and
the service disagree about what the service accepts.
"""

import schemathesis

# 422s for rules that depend on stored data or on the language, not on the request's shape
DOMAIN_CODES = frozenset({
    "invalid_expression",  # PQL: checked against the sandbox's schema and segments
    "invalid_profile",  # a profile document that does not fit the sandbox's schema
    "invalid_labels",  # field paths that are not fields of the schema in force
    "invalid_schema",  # a schema that is not a consistent schema
    "schema_incompatible",  # a schema change that stored data forbids
    "invalid_identity_settings",  # dataset_precedence naming datasets that do not exist
    "invalid_mapping",  # a batch mapping naming unknown fields, namespaces or columns
    "invalid_file",  # a batch file that is empty or cannot be read
    # a policy's marketing_action must name a core or custom action of the sandbox (stored data, like
    # a label that must exist): any non-empty key is the right shape
    "unknown_marketing_action",
    "invalid_policy",  # a deny condition in the policy language (labels, AND, OR …), checked like PQL
    "invalid_attributes",  # attributes to export that are not fields of the schema in force
    # a members cursor is a token the service issued (`next` of the previous page); one made up
    # has no page to continue, whatever its characters
    "invalid_cursor",
    # POST /v1/sources: the document states each type's config and mapping (a discriminated union
    # on `type`); what is left is about stored data and the server — the datasets' kinds, the
    # folder (exists, readable, under CDP_FILE_DROP_ROOT), the database URL (a supported backend,
    # not cdp's own database), table/query and the dataset config.target names
    "invalid_source",
    # activation: a consent field that is not a profile attribute of the schema in force, a directory
    # with `..` (invalid_destination); namespaces the sandbox does not have (invalid_identities); an end
    # before the start, which may be the default start (now: invalid_activation)
    "invalid_destination",
    "invalid_identities",
    "invalid_activation",
})


@schemathesis.check
def no_shape_rejection(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 415, 422):
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - not the error shape: also a failure
        code = "not the error shape"
    if response.status_code == 422 and code in DOMAIN_CODES:
        return None
    raise AssertionError(f"{response.status_code} {code}: the OpenAPI document allows this request, the service "
                         f"refuses its shape (only a 422 with one of {sorted(DOMAIN_CODES)} may answer it)")
