"""One error shape for every failure: `{"error", "message", "request_id"}`.

Expected failures raise an `AppError` subclass; handlers render them, and also
FastAPI's validation errors and Starlette's HTTP errors (404 for unknown
routes, 405), in the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.log import current_request_id

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    error: str
    message: str
    request_id: str | None = None
    details: list[dict[str, Any]] | None = None


class AppError(Exception):
    status_code: int = 400
    error: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        error: str | None = None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.error = error or self.error
        self.status_code = status_code or self.status_code
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequest(AppError):
    status_code, error = 400, "bad_request"


class Unauthorized(AppError):
    status_code, error, message = 401, "unauthorized", "Authentication required."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class PaymentRequired(AppError):
    status_code, error = 402, "payment_required"


class Forbidden(AppError):
    status_code, error, message = 403, "forbidden", "You may not do this."


class NotFound(AppError):
    status_code, error, message = 404, "not_found", "Not found."


class Conflict(AppError):
    status_code, error = 409, "conflict"


class Gone(AppError):
    status_code, error = 410, "gone"


class PayloadTooLarge(AppError):
    status_code, error = 413, "payload_too_large"


class Unprocessable(AppError):
    status_code, error = 422, "validation_error"


class TooManyRequests(AppError):
    status_code, error, message = 429, "rate_limited", "Too many requests."

    def __init__(self, message: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(message, headers=headers, **kwargs)


class ServiceUnavailable(AppError):
    status_code, error = 503, "service_unavailable"


def error_payload(
    status_code: int, error: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "message": message, "request_id": current_request_id()}
    if details is not None:
        body["details"] = details
    return body


def error_response(
    status_code: int,
    error: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_payload(status_code, error, message, details),
        status_code=status_code,
        headers=dict(headers or {}),
    )


def _http_error_code(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        # `input` may echo a secret (a password, a key): never send it back.
        details.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return details


def _validation_message(details: list[dict[str, Any]]) -> str:
    parts = []
    for detail in details[:5]:
        loc = ".".join(p for p in detail["loc"] if p not in ("body", "query", "path", "header"))
        parts.append(f"{loc or 'request'}: {detail['msg']}")
    return "Invalid request. " + "; ".join(parts) if parts else "Invalid request."


async def _app_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.error, exc.message, headers=exc.headers)


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    return error_response(422, "validation_error", _validation_message(details), details=details)


async def _http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = "No such resource or route."
    elif isinstance(exc.detail, str):
        message = exc.detail
    else:
        message = HTTPStatus(exc.status_code).phrase
    return error_response(
        exc.status_code,
        _http_error_code(exc.status_code),
        message,
        headers=getattr(exc, "headers", None),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": HTTPStatus(code).phrase}
    for code in (400, 401, 402, 403, 404, 409, 410, 413, 422, 429, 502, 503, 504)
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error codes a route may return."""
    return {code: ERROR_RESPONSES[code] for code in codes}
