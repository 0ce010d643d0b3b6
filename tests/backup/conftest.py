from __future__ import annotations

import pytest

from tests.support.storage import NO_RATE_LIMITS, blob_backend, moto_endpoint

__all__ = ["blob_backend", "moto_endpoint"]


@pytest.fixture
def extra_settings() -> dict[str, object]:
    """Parametrize in a test to add settings (quotas, upload limit)."""
    return {}


@pytest.fixture
def settings_overrides(
    blob_backend: dict[str, object], extra_settings: dict[str, object]
) -> dict[str, object]:
    return {**NO_RATE_LIMITS, **blob_backend, **extra_settings}
