"""The FastAPI side of the unit-of-work contract (`app/work.py`): routes ask for their unit here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.errors import Unauthorized
from app.work import CreditMeter, LLMGrant, UnitOfWork

ADMITTED_UNIT = "unit_of_work"
UNIT_ADMISSION = "unit_admission"


def get_unit_of_work(connection: HTTPConnection) -> UnitOfWork:
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
