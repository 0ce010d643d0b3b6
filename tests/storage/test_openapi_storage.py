"""What a generated client learns about the storage and backup routes from /openapi.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.main import create_app
from tests.support.settings import make_settings


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("openapi")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{data}/db.sqlite", Path(data)))
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in document["paths"].items()
        if path.startswith(("/api/v1/storage", "/api/v1/backup"))
        for method, op in ops.items()
    ]


def test_every_route_has_a_sentence_for_a_summary(document: dict[str, Any]) -> None:
    found = operations(document)
    assert len(found) == 14
    for method, path, op in found:
        assert len(op.get("summary", "").split()) >= 4, (method, path, op.get("summary"))


@pytest.mark.parametrize(
    "path",
    ["/api/v1/storage/records/{record_id}", "/api/v1/backup/{backup_id}", "/api/v1/backup"],
)
def test_downloads_declare_their_headers_and_304(document: dict[str, Any], path: str) -> None:
    op = document["paths"][path]["get"]
    for code in ("200", "304"):
        headers = op["responses"][code]["headers"]
        assert {"ETag", "X-Checksum", "Last-Modified"} <= set(headers), (code, headers)
    assert "content" not in op["responses"]["304"]
    assert "application/octet-stream" in op["responses"]["200"]["content"]
    assert "If-None-Match" in {p["name"] for p in op["parameters"]}
    if path.startswith("/api/v1/backup"):
        assert {"X-Backup-Id", "X-Backup-Version", "X-Backup-Timestamp"} <= set(
            op["responses"]["200"]["headers"]
        )


def test_writes_declare_if_match_and_412(document: dict[str, Any]) -> None:
    record = document["paths"]["/api/v1/storage/records/{record_id}"]
    for method in ("put", "delete"):
        op = record[method]
        assert "If-Match" in {p["name"] for p in op["parameters"]}
        assert "ETag" in op["responses"]["412"]["headers"]
    assert "ETag" in record["put"]["responses"]["200"]["headers"]
    created = document["paths"]["/api/v1/storage/records"]["post"]["responses"]["201"]
    assert "ETag" in created["headers"]


def test_change_feed_and_timestamps_are_documented(document: dict[str, Any]) -> None:
    op = document["paths"]["/api/v1/storage/records/changes"]["get"]
    params = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    assert set(params) == {"cursor", "changed_since", "limit"}
    assert "milliseconds" in params["changed_since"]["description"]
    assert params["limit"]["schema"]["maximum"] == 500
    assert "410" in op["responses"]
    listing = document["paths"]["/api/v1/storage/records"]["get"]
    assert "changed_since" not in {p["name"] for p in listing["parameters"]}
    put = document["paths"]["/api/v1/backup"]["put"]
    stamp = next(p for p in put["parameters"] if p["name"] == "X-Backup-Timestamp")
    assert "milliseconds" in stamp["description"]
