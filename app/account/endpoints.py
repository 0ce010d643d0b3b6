"""`/account`: the caller's whole account — its data export and its deletion."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, status
from fastapi.responses import StreamingResponse

from app.account.schemas import DeleteAccountRequest
from app.account.service import AccountService
from app.auth.abuse import AccountThrottlesDep, Guarded
from app.auth.dependencies import CurrentUser, PasswordHasherDep
from app.errors import error_responses
from app.kit.deps import ClientIPDep
from app.kit.routing import DomainRouter
from app.models.base import utcnow

router = DomainRouter(prefix="/account", tags=["account"])


async def get_account_service(request: Request, hasher: PasswordHasherDep) -> AccountService:
    state = request.app.state
    return AccountService(state.db, hasher, state.blob_store, state.vector_index, state.stripe)


AccountServiceDep = Annotated[AccountService, Depends(get_account_service)]


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The ZIP archive."},
        **error_responses(401),
    },
)
async def export(user: CurrentUser, service: AccountServiceDep) -> StreamingResponse:
    """Everything the server keeps for the caller, as a ZIP streamed while it is made."""
    filename = f"adiuva-export-{utcnow():%Y%m%d}.zip"
    return StreamingResponse(
        service.export(user.id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 409, 422, 429, 503),
)
async def delete_account(
    body: DeleteAccountRequest,
    user: CurrentUser,
    service: AccountServiceDep,
    throttles: AccountThrottlesDep,
    ip: ClientIPDep,
) -> None:
    """Delete the account and its data (the password again); accounting rows stay anonymous."""
    await throttles.check(Guarded.ACCOUNT_DELETE, ip, str(user.id))
    await service.delete(user.id, body.password)
