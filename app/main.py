"""Application factory: lifespan-owned clients, the middleware stack, the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.account.endpoints import router as account_router
from app.auth.abuse import account_throttles_lifespan
from app.auth.account_endpoints import router as account_auth_router
from app.auth.endpoints import router as auth_router
from app.auth.invalidation import access_source
from app.auth.security import PasswordHasher, TokenCodec
from app.auth.throttle import AuthThrottle
from app.backup.endpoints import router as backup_router
from app.billing.dependencies import billing_lifespan
from app.billing.endpoints import router as billing_router
from app.billing.seats import seats_lifespan
from app.billing.tiers import TierTable
from app.chat.endpoints import router as chat_router
from app.chat.server_text import server_texts
from app.chat.service import chat_lifespan
from app.config import Settings
from app.credits.endpoints import router as credits_router
from app.db import Database
from app.demo.endpoints import router as demo_router
from app.demo.tasks import demo_lifespan
from app.errors import install_error_handlers
from app.gateway.body_limit import BodyLimitMiddleware
from app.gateway.byok import BYOKGuardMiddleware
from app.gateway.cors import CORSMiddleware
from app.gateway.input_guard import InputGuardMiddleware, check_json_body
from app.gateway.quota_gate import QuotaGateMiddleware
from app.gateway.rate_limit import TierRateLimitMiddleware
from app.gateway.redaction import Redactor
from app.gateway.request_context import RequestContextMiddleware
from app.gateway.sanitizer import SanitizerMiddleware
from app.gateway.services import gateway_lifespan
from app.health.endpoints import router as health_router
from app.kit.byok import BYOKPolicy
from app.kit.client_ip import parse_trusted_proxies
from app.kit.policy import RoutePolicies
from app.kit.ratelimit import MovingWindow, build_storage
from app.kit.routing import operation_id
from app.log import configure_logging
from app.mail.queue import mail_lifespan
from app.maintenance import maintenance_lifespan
from app.marketplace.endpoints import router as marketplace_router
from app.metrics import router as metrics_router
from app.openapi import DESCRIPTION, install_asyncapi, install_openapi
from app.plans.endpoints import router as plans_router
from app.plans.service import plans_lifespan
from app.quota.endpoints import router as quota_router
from app.shutdown import LIFESPAN_STATE_KEY, shutdown_lifespan
from app.storage.endpoints import router as storage_router
from app.storage.lifespan import storage_lifespan
from app.tenants.endpoints import router as tenants_router
from app.tenants.endpoints import teams_lifespan

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
        # Shared by the gateway's identity resolution and get_principal: the per-worker
        # cache of callers, with its invalidation (app/auth/invalidation.py).
        async with access_source(db, settings) as source:
            app.state.access_lookup = source
            yield
    finally:
        await db.dispose()


# Opened in this order, closed in reverse.
LIFESPAN_PARTS: list[LifespanPart] = [
    shutdown_lifespan,
    core_lifespan,
    account_throttles_lifespan,
    mail_lifespan,
    gateway_lifespan,
    storage_lifespan,
    billing_lifespan,
    seats_lifespan,
    teams_lifespan,
    demo_lifespan,
    maintenance_lifespan,
    chat_lifespan,
    plans_lifespan,
]

ROUTERS: list[APIRouter] = [
    health_router,
    auth_router,
    account_auth_router,
    account_router,
    tenants_router,
    quota_router,
    credits_router,
    storage_router,
    backup_router,
    billing_router,
    marketplace_router,
    demo_router,
    chat_router,
    plans_router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.LOG_LEVEL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        async with AsyncExitStack() as stack:
            for part in LIFESPAN_PARTS:
                await stack.enter_async_context(part(app, settings))
            # Lifespan state is what the server sees of the app: app/server.py drains
            # the open streams through it before it closes the connections.
            yield {LIFESPAN_STATE_KEY: app.state.shutdown}

    options: dict[str, Any] = dict(
        title="Adiuva Cloud API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(check_json_body)],
        # Operation ids `domain-action` (`auth-register`), for the clients generated from it.
        generate_unique_id_function=operation_id,
    )
    if settings.is_prod:
        # No documents in production (SPEC §12).
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **options)
    else:
        # Swagger UI and ReDoc from the files fastapi-offline ships, served under
        # /static-offline-docs: the docs work offline and on locked-down networks.
        app = FastAPIOffline(
            docs_url="/docs",
            redoc_url="/redoc",
            openapi_url="/openapi.json",
            swagger_ui_parameters={"validatorUrl": None},
            **options,
        )
        install_asyncapi(app, settings)
    # Available before the lifespan runs (middleware reads them per request).
    app.state.settings = settings
    app.state.tiers = TierTable(settings)
    app.state.trusted_proxies = parse_trusted_proxies(settings.TRUSTED_PROXIES)
    # Each route declares its gateway policy; read off the routers as they are included.
    policies = app.state.route_policies = RoutePolicies()
    app.state.redactor = Redactor.build(server_texts())

    install_error_handlers(app)
    install_openapi(app)

    # Starlette wraps in reverse order of registration: the last added is outermost.
    # request id/logging → CORS → size caps → input guard → BYOK guard → tier rate limit
    # → demo/quota gate → sanitizer → router
    app.add_middleware(SanitizerMiddleware, policies=policies)
    app.add_middleware(QuotaGateMiddleware, policies=policies)
    app.add_middleware(TierRateLimitMiddleware, policies=policies)
    app.add_middleware(BYOKGuardMiddleware, policy=BYOKPolicy.from_settings(settings))
    app.add_middleware(InputGuardMiddleware)
    # Before anything reads a body or looks a caller up; inside CORS so that a browser
    # client can read the 413/431, inside the request context so it carries a request id.
    app.add_middleware(BodyLimitMiddleware, policies=policies, settings=settings)
    # Origins from CORS_ORIGINS / CORS_ORIGIN_REGEX, WebSocket handshakes included.
    app.add_middleware(
        CORSMiddleware, origins=settings.CORS_ORIGINS, origin_regex=settings.CORS_ORIGIN_REGEX
    )
    app.add_middleware(RequestContextMiddleware)

    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
        policies.load(router.routes, prefix=API_PREFIX)
    app.include_router(metrics_router)
    return app
