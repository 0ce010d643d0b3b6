"""Text no route can store or answer with is refused at the edge, with 422.

A NUL character cannot be stored in a PostgreSQL text column, and a lone UTF-16
surrogate (`"\\ud800"` in JSON) cannot be encoded as UTF-8 by either database
driver or by the JSON response: let through, both end as a server error deep in
a route. They are refused once, for every route:

- `InputGuardMiddleware` checks the path and the query string, as the routers
  will decode them, before anything else reads them (HTTP and WebSocket);
- `check_json_body`, an application-wide dependency, checks the JSON body
  FastAPI has already decoded for the route (it never reads a body itself), and
  bounds its nesting depth so no recursive code downstream meets a pathological
  document.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Unprocessable
from app.gateway.responses import refuse
from app.kit.text import BAD_TEXT, MAX_JSON_DEPTH, Location, find_bad_json, has_bad_text

_MISSING = object()


def _message(problem: str) -> str:
    if problem == "depth":
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted."
    return "Text may not contain NUL characters or unpaired UTF-16 surrogates."


def json_error(location: Location, problem: str) -> RequestValidationError:
    error_type = "json_too_deep" if problem == "depth" else "string_characters"
    # Keys are echoed back: cut and cleaned, so the answer itself can be encoded.
    parts = location[: MAX_JSON_DEPTH + 1]
    loc = ("body", *(BAD_TEXT.sub("\ufffd", str(part)[:64]) for part in parts))
    return RequestValidationError([{"type": error_type, "loc": loc, "msg": _message(problem)}])


async def check_json_body(connection: HTTPConnection) -> None:
    """Refuse (422) a JSON body holding NUL characters, lone surrogates, or nested too deep.

    Only the body FastAPI decoded for the route's body parameter is checked: it is
    cached on the request object, so nothing is read or parsed a second time, and
    raw bodies (uploads, the signed webhook) are left to their routes.
    """
    decoded = connection.__dict__.get("_json", _MISSING)
    if decoded is _MISSING:
        return
    found = find_bad_json(decoded)
    if found is not None:
        raise json_error(*found)


def _query_is_bad(query_string: bytes) -> bool:
    # Decoded as Starlette's QueryParams decodes it, so the check sees what routes see.
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return any(has_bad_text(key) or has_bad_text(value) for key, value in pairs)


class InputGuardMiddleware:
    """Refuses a path or query string holding NUL characters or lone surrogates (422)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if has_bad_text(scope["path"]) or (query and _query_is_bad(query)):
            error = Unprocessable(
                "The path and the query string may not contain NUL characters "
                "or unpaired UTF-16 surrogates.",
                error="validation_error",
            )
            await refuse(scope, receive, send, error)
            return
        await self.app(scope, receive, send)
