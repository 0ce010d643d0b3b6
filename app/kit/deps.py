"""Dependencies every domain shares: settings and the caller's address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.kit.client_ip import client_ip


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_client_ip(request: Request) -> str:
    return client_ip(request.scope, request.app.state.trusted_proxies)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientIPDep = Annotated[str, Depends(get_client_ip)]
