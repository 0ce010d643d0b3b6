"""Who may use a demo session, and the session a request acts in.

A demo session is held by whoever has its session token (`Authorization:
Bearer <session_token>`, a JWT of type `demo`) or its id (`X-Demo-Session-Id`).

- `CurrentDemoSession`: the live session named by those credentials (401 without
  valid ones, also once the session expired or was ended: the gateway answers so
  before the route runs). Other domains (chat) use it to act inside a session.
- `PathDemoSession`: the live session named in the URL. The id in the path is
  itself the credential, the same secret the header carries; a token or header
  sent along must name the same session (403 otherwise), so one session's
  holder can never act on another by putting its id in the path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from app.auth.dependencies import TokenCodecDep
from app.auth.security import InvalidToken, TokenCodec
from app.db import SessionDep
from app.demo.examples import DemoExampleService
from app.demo.limits import SessionCreationLimit
from app.demo.service import DemoService, ensure_live
from app.demo.templates import TemplateCatalog
from app.errors import Forbidden, Gone, NotFound, Unauthorized
from app.kit.deps import ClientIPDep, SettingsDep
from app.models import DemoSession

SESSION_HEADER = "X-Demo-Session-Id"

demo_token_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="DemoSessionToken",
    description="`session_token` from POST /api/v1/demo/sessions",
)
demo_header_scheme = APIKeyHeader(
    name=SESSION_HEADER,
    auto_error=False,
    scheme_name="DemoSessionId",
    description="`session_id` from POST /api/v1/demo/sessions",
)

TokenCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(demo_token_scheme)]
HeaderSessionId = Annotated[str | None, Depends(demo_header_scheme)]


async def get_templates(request: Request) -> TemplateCatalog:
    return request.app.state.demo_templates


TemplatesDep = Annotated[TemplateCatalog, Depends(get_templates)]


async def get_demo_service(
    session: SessionDep, settings: SettingsDep, templates: TemplatesDep, codec: TokenCodecDep
) -> DemoService:
    return DemoService(session, settings, templates, codec)


DemoServiceDep = Annotated[DemoService, Depends(get_demo_service)]


async def limit_session_creation(request: Request, ip: ClientIPDep) -> None:
    """429 `demo_session_limit` once this address started `DEMO_SESSIONS_PER_IP` sessions."""
    limit: SessionCreationLimit = request.app.state.demo_session_limit
    await limit.check(ip)


SessionCreationAllowed = Depends(limit_session_creation)


async def get_example_service(session: SessionDep) -> DemoExampleService:
    return DemoExampleService(session)


ExampleServiceDep = Annotated[DemoExampleService, Depends(get_example_service)]


def _token_session_id(codec: TokenCodec, credentials: HTTPAuthorizationCredentials) -> str | None:
    try:
        return str(codec.decode(credentials.credentials, "demo")["sub"])
    except (InvalidToken, KeyError):
        return None


def claimed_session_id(
    codec: TokenCodec,
    credentials: HTTPAuthorizationCredentials | None,
    header: str | None,
) -> str | None:
    """The session the caller's credentials name; 401 if they contradict each other.

    A bearer token that is not a demo token (a user's access token, an expired
    session token) names nothing; with no header beside it, the caller holds no
    demo session.
    """
    from_token = _token_session_id(codec, credentials) if credentials else None
    from_header = header.strip() if header and header.strip() else None
    if from_token and from_header and from_token != from_header:
        raise Unauthorized(
            f"The session token and {SESSION_HEADER} name different demo sessions.",
            error="session_mismatch",
        )
    return from_token or from_header


async def _load(session: SessionDep, session_id: str) -> DemoSession | None:
    return await session.scalar(select(DemoSession).where(DemoSession.id == session_id))


async def get_current_demo_session(
    session: SessionDep,
    codec: TokenCodecDep,
    credentials: TokenCredentials,
    header: HeaderSessionId,
) -> DemoSession:
    session_id = claimed_session_id(codec, credentials, header)
    if session_id is None:
        raise Unauthorized(
            f"A demo session token (Bearer) or {SESSION_HEADER} header is required; "
            "the token may have expired.",
            error="demo_session_required",
        )
    row = await _load(session, session_id)
    if row is None:
        raise Unauthorized("Unknown demo session.", error="invalid_demo_session")
    try:
        return ensure_live(row)
    except Gone as gone:
        # A credential that no longer holds is a 401, as the gateway answers it; this
        # is only reached when the session ends while the request is under way.
        raise Unauthorized(gone.message, error=gone.error) from None


async def get_path_demo_session(
    session: SessionDep,
    codec: TokenCodecDep,
    credentials: TokenCredentials,
    header: HeaderSessionId,
    session_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=64,
            description="The session's id, which is its credential: no other is needed. A "
            "session token or X-Demo-Session-Id sent along must name the same session.",
        ),
    ],
) -> DemoSession:
    claimed = claimed_session_id(codec, credentials, header)
    if claimed is not None and claimed != session_id:
        raise Forbidden(
            "Your credentials belong to another demo session.", error="not_your_session"
        )
    row = await _load(session, session_id)
    if row is None:
        raise NotFound("No such demo session.", error="session_not_found")
    return ensure_live(row)


CurrentDemoSession = Annotated[DemoSession, Depends(get_current_demo_session)]
PathDemoSession = Annotated[DemoSession, Depends(get_path_demo_session)]
