"""``/v1/sandboxes`` — the sandboxes of the deployment. Listing: any role (a key bound to one
sandbox sees only that one); creating: an admin key valid in every sandbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from cdp.api.deps import ConnectionDep, require
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import Page, PageDep
from cdp.auth import ALL_ROLES, Role
from cdp.auth.service import Principal
from cdp.errors import Forbidden
from cdp.sandboxes import service
from cdp.sandboxes.models import SandboxCreate, SandboxRead

router = APIRouter(prefix="/sandboxes", tags=["sandboxes"], responses=COMMON_RESPONSES)

# X-Sandbox need not name an existing sandbox here (a sandbox may be named there while it is created).
Admins = Annotated[Principal, require(Role.admin, sandbox_must_exist=False)]
AnyRole = Annotated[Principal, require(*ALL_ROLES, sandbox_must_exist=False)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SandboxRead,
             responses={409: {"model": ErrorResponse}},
             summary="Create a sandbox (an admin key valid in every sandbox)",
             description="A sandbox must exist before a request names it in `X-Sandbox` (else 404 "
                         "`unknown_sandbox`). `prod` always exists.")
def create_sandbox(spec: SandboxCreate, principal: Admins, connection: ConnectionDep) -> SandboxRead:
    if principal.key_sandbox is not None:
        raise Forbidden(f"this key works only in sandbox {principal.key_sandbox!r}: only a key valid in every "
                        f"sandbox creates sandboxes", code="sandbox_forbidden",
                        details={"key_sandbox": principal.key_sandbox})
    return service.create_sandbox(connection=connection, name=spec.name, description=spec.description)


@router.get("", response_model=Page[SandboxRead], summary="List sandboxes, by name")
def list_sandboxes(principal: AnyRole, connection: ConnectionDep, page: PageDep) -> Page[SandboxRead]:
    items, total = service.list_sandboxes(connection=connection, only=principal.key_sandbox, limit=page.limit,
                                          offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
