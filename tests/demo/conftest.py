from __future__ import annotations

import pytest

ADMIN_EMAIL = "demo-admin@example.com"


@pytest.fixture
def extra_settings() -> dict[str, object]:
    """Parametrize in a test to add settings."""
    return {}


@pytest.fixture
def settings_overrides(extra_settings: dict[str, object]) -> dict[str, object]:
    # Many requests from one test client: the tier rate limit is not under test here.
    return {
        "RATE_LIMIT_FREE_PER_MINUTE": 100_000,
        "RATE_LIMIT_PRO_PER_MINUTE": 100_000,
        "ADMIN_EMAILS": ADMIN_EMAIL,
        # The in-app cleanup task is tested on its own; elsewhere it must not race the test.
        "DEMO_CLEANUP_INTERVAL_SECONDS": 0,
        # Every test client comes from one address; the per-address cap has its own tests.
        "DEMO_SESSIONS_PER_IP": "1000/hour",
        **extra_settings,
    }
