"""Application factory: lifespan-owned clients, the middleware stack, the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.auth.endpoints import router as auth_router
from app.auth.security import PasswordHasher, TokenCodec
from app.auth.throttle import AuthThrottle
from app.billing.tiers import TierTable
from app.config import Settings
from app.db import Database
from app.errors import install_error_handlers
from app.gateway.client_ip import parse_trusted_proxies
from app.gateway.request_context import RequestContextMiddleware
from app.health.endpoints import router as health_router
from app.kit.ratelimit import MovingWindow, build_storage
from app.log import configure_logging

API_PREFIX = "/api/v1"

# A lifespan part opens a domain's clients, puts them on `app.state`, and closes them.
LifespanPart = Callable[[FastAPI, Settings], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def core_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    settings.ensure_data_dir()
    db = Database(settings.database_url, settings)
    limiter_storage = build_storage(settings.RATE_LIMIT_STORAGE_URI)
    hasher = PasswordHasher(settings.BCRYPT_ROUNDS)
    await hasher.warm_up()
    app.state.db = db
    app.state.password_hasher = hasher
    app.state.token_codec = TokenCodec(settings)
    app.state.limiter_storage = limiter_storage
    app.state.auth_throttle = AuthThrottle(
        MovingWindow(limiter_storage),
        settings.AUTH_RATE_LIMIT_PER_IP,
        settings.AUTH_RATE_LIMIT_PER_ACCOUNT,
        fail_open=settings.RATE_LIMIT_FAIL_OPEN,
    )
    try:
        yield
    finally:
        await db.dispose()


# Opened in this order, closed in reverse.
LIFESPAN_PARTS: list[LifespanPart] = [core_lifespan]

ROUTERS: list[APIRouter] = [health_router, auth_router]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.LOG_LEVEL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for part in LIFESPAN_PARTS:
                await stack.enter_async_context(part(app, settings))
            yield

    app = FastAPI(
        title="Adiuva Cloud API",
        version=__version__,
        description="Cloud backend of the Adiuva desktop app, behind a quota gateway.",
        lifespan=lifespan,
        docs_url=None if settings.is_prod else "/docs",
        redoc_url=None if settings.is_prod else "/redoc",
        openapi_url=None if settings.is_prod else "/openapi.json",
    )
    # Available before the lifespan runs (middleware reads them per request).
    app.state.settings = settings
    app.state.tiers = TierTable(settings)
    app.state.trusted_proxies = parse_trusted_proxies(settings.TRUSTED_PROXIES)

    install_error_handlers(app)

    # Starlette wraps in reverse order of registration: the last added is outermost.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.CORS_ORIGINS,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "Retry-After", "X-Checksum"],
    )
    app.add_middleware(RequestContextMiddleware)

    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    return app
