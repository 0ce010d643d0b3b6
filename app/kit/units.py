"""The FastAPI side of the unit-of-work contract (`app/work.py`).

Routes ask here for what the gateway resolved: the caller and the admitted unit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.errors import Unauthorized
from app.work import CreditMeter, Identity, LLMGrant, UnitOfWork

# Where the gateway leaves what it resolved, in the request scope's state.
IDENTITY = "identity"
ADMITTED_UNIT = "unit_of_work"
UNIT_ADMISSION = "unit_admission"

# The dependencies below are `async def` although they never await: FastAPI runs a
# plain function in its threadpool, a thread hand-off on every request.


async def caller_identity(connection: HTTPConnection) -> Identity:
    """Who the gateway resolved the caller to (every rate-limited route has one).

    Credentials that were sent but no longer hold (an expired or revoked token, an
    ended demo session) are refused here rather than answered as an anonymous caller.
    """
    identity = connection.scope.get("state", {}).get(IDENTITY)
    if identity is None:
        raise RuntimeError("no identity in scope: the route is exempt from the gateway")
    if identity.invalid_credentials:
        raise Unauthorized("Invalid or expired credentials.", error="invalid_token")
    return identity


CallerIdentity = Annotated[Identity, Depends(caller_identity)]


async def get_unit_of_work(connection: HTTPConnection) -> UnitOfWork:
    """The unit the gate admitted for this request (a route declared `unit_of_work=True`).

    The gate admits none when the caller's credentials do not verify, and leaves
    the refusal to the route: a 401, not a server error.
    """
    unit = connection.scope.get("state", {}).get(ADMITTED_UNIT)
    if unit is None:
        raise Unauthorized("Invalid or expired credentials.", error="invalid_token")
    return unit


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]

__all__ = ["CreditMeter", "LLMGrant", "UnitOfWork", "UnitOfWorkDep", "get_unit_of_work"]
