"""The document declares X-Tenant-Id on every route a signed-in user calls, and only there."""

from __future__ import annotations


def _tenant_header(operation: dict) -> bool:
    return any(p.get("name") == "X-Tenant-Id" for p in operation.get("parameters", []))


async def test_x_tenant_id_is_declared_where_a_workspace_is_acted_in(client):
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for path, method in (
        ("/api/v1/credits", "get"),
        ("/api/v1/storage/records", "get"),
        ("/api/v1/billing/subscription", "get"),
        ("/api/v1/chat", "post"),
        ("/api/v1/tenants", "post"),
    ):
        operation = paths[path][method]
        assert _tenant_header(operation), path
        assert operation["responses"]["403"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    for path, method in (("/api/v1/auth/login", "post"), ("/api/v1/health", "get")):
        assert not _tenant_header(paths[path][method]), path


async def test_browsers_may_send_x_tenant_id(client):
    response = await client.options(
        "/api/v1/credits",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-tenant-id",
        },
    )
    assert response.status_code == 200, response.text
    assert "x-tenant-id" in response.headers["access-control-allow-headers"].lower()
