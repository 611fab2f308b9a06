"""``/v1/me`` — the calling key (any role; what the web interface offers follows its role).
``/v1/keys`` — API keys, admin only. Keys bound to the request's sandbox and keys valid in
every sandbox are visible; a created key is bound to the request's sandbox unless
``all_sandboxes`` is set (which only a key valid everywhere may ask for)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from cdp.api.deps import Admins, AnyRole, ConnectionDep
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import Page, PageDep
from cdp.auth import service
from cdp.auth.models import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from cdp.errors import Forbidden

router = APIRouter(prefix="/keys", tags=["keys"], responses=COMMON_RESPONSES)
me_router = APIRouter(tags=["keys"], responses=COMMON_RESPONSES)

KeyId = Annotated[str, Path(max_length=32, description="The key's id (`cdp_<id>_…`).")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated,
             responses={409: {"model": ErrorResponse}}, summary="Create an API key (the key is shown only here)")
def create_key(spec: ApiKeyCreate, principal: Admins, connection: ConnectionDep) -> ApiKeyCreated:
    if spec.all_sandboxes and principal.key_sandbox is not None:
        raise Forbidden(f"this key works only in sandbox {principal.key_sandbox!r}: it cannot create keys valid in "
                        f"every sandbox", code="sandbox_forbidden", details={"key_sandbox": principal.key_sandbox})
    return service.create_key(connection=connection, name=spec.name, role=spec.role,
                              sandbox=None if spec.all_sandboxes else principal.sandbox)


@router.get("", response_model=Page[ApiKeyRead], summary="List API keys (never the keys themselves)")
def list_keys(principal: Admins, connection: ConnectionDep, page: PageDep) -> Page[ApiKeyRead]:
    items, total = service.list_keys(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                     offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{key_id}", response_model=ApiKeyRead, responses={404: {"model": ErrorResponse}}, summary="Read an API key")
def get_key(key_id: KeyId, principal: Admins, connection: ConnectionDep) -> ApiKeyRead:
    return service.get_key(connection=connection, sandbox=principal.sandbox, key_id=key_id)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
               summary="Revoke an API key (at once, for good)")
def revoke_key(key_id: KeyId, principal: Admins, connection: ConnectionDep) -> Response:
    service.revoke_key(connection=connection, principal=principal, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.get("/me", response_model=ApiKeyRead, summary="The API key making this request: its name, role and sandbox",
               description="What a client may offer follows from the role: each operation lists the roles it allows "
                           "under `x-roles` in the OpenAPI document.")
def read_me(principal: AnyRole, connection: ConnectionDep) -> ApiKeyRead:
    return service.get_key(connection=connection, sandbox=principal.sandbox, key_id=principal.key_id)
