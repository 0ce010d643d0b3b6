"""Errors of the chat layer: what an upstream LLM failure becomes for the client."""

from __future__ import annotations

from app.errors import AppError, ErrorBody


class UpstreamError(AppError):
    status_code, error = 502, "upstream_error"
    message = "The language model provider returned an error. Try again later."


class UpstreamTimeout(AppError):
    status_code, error = 504, "upstream_timeout"
    message = "The language model provider did not answer in time. Try again later."


UPSTREAM_RESPONSES: dict[int | str, dict] = {
    502: {"model": ErrorBody, "description": "Bad Gateway (upstream_error)"},
    504: {"model": ErrorBody, "description": "Gateway Timeout (upstream_timeout)"},
}
