from __future__ import annotations

from tests.support.storage import blob_backend, extra_settings, moto_endpoint, settings_overrides

__all__ = ["blob_backend", "extra_settings", "moto_endpoint", "settings_overrides"]
