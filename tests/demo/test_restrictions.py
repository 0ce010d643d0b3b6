"""The demo restriction table (SPEC §9.3), operation by operation."""

from __future__ import annotations

import pytest

from app.demo.restrictions import (
    ADMINISTRATION,
    BACKUPS,
    BILLING,
    DELETES,
    OTHER_WRITES,
    PLUGIN_CHANGES,
    PLUGIN_INSTALL,
    STORAGE_WRITES,
    demo_restriction,
    restriction_error,
)

ALLOWED = [
    # reads
    ("GET", "/api/v1/storage/records"),
    ("GET", "/api/v1/storage/records/0b6f3c3e-0000-4000-8000-000000000000"),
    ("GET", "/api/v1/plugins"),
    ("GET", "/api/v1/plugins/github-sync"),
    ("GET", "/api/v1/agents"),
    ("GET", "/api/v1/plans/playbook"),
    ("GET", "/api/v1/quota/status"),
    ("GET", "/api/v1/credits"),
    ("HEAD", "/api/v1/health"),
    ("OPTIONS", "/api/v1/chat"),
    ("GET", "/api/v1/demo/accounts"),
    ("GET", "/api/v1/demo/sessions/demo_abc"),
    ("GET", "/api/v1/demo/sessions/demo_abc/workspace"),
    ("POST", "/api/v1/storage/vectors/search"),
    # chat
    ("POST", "/api/v1/chat"),
    ("WEBSOCKET", "/api/v1/chat/stream"),
    ("WS", "/api/v1/chat/stream"),
    ("GET", "/api/v1/chat/stream"),
    # the session's own lifecycle and sandbox
    ("POST", "/api/v1/demo/sessions"),
    ("POST", "/api/v1/demo/sessions/demo_abc/extend"),
    ("DELETE", "/api/v1/demo/sessions/demo_abc"),
    ("POST", "/api/v1/demo/sessions/demo_abc/workspace/actions"),
    ("POST", "/api/v1/demo/examples/init"),
    # turning into a real user
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
]

BLOCKED = [
    # deletes
    ("DELETE", "/api/v1/storage/vectors", DELETES),
    ("DELETE", "/api/v1/storage/records/abc", DELETES),
    ("DELETE", "/api/v1/plugins/github-sync/install", DELETES),
    ("DELETE", "/api/v1/demo/sessions/demo_abc/workspace", DELETES),
    ("DELETE", "/api/v1/demo/sessions", DELETES),
    # billing, reads included: a demo has no billing
    ("POST", "/api/v1/billing/checkout", BILLING),
    ("GET", "/api/v1/billing/subscription", BILLING),
    ("DELETE", "/api/v1/billing/subscription", BILLING),
    # backups, reads included
    ("PUT", "/api/v1/backup", BACKUPS),
    ("GET", "/api/v1/backup", BACKUPS),
    ("GET", "/api/v1/backup/history", BACKUPS),
    ("DELETE", "/api/v1/backup/abc", BACKUPS),
    # marketplace
    ("POST", "/api/v1/plugins/github-sync/install", PLUGIN_INSTALL),
    ("POST", "/api/v1/plugins", PLUGIN_CHANGES),
    ("POST", "/api/v1/plugins/github-sync/rating", PLUGIN_CHANGES),
    # storage writes
    ("POST", "/api/v1/storage/records", STORAGE_WRITES),
    ("PUT", "/api/v1/storage/records/abc", STORAGE_WRITES),
    ("POST", "/api/v1/storage/vectors/upsert", STORAGE_WRITES),
    # administration
    ("GET", "/api/v1/admin/plugins/pending", ADMINISTRATION),
    ("POST", "/api/v1/admin/tenants/abc/credits", ADMINISTRATION),
    # anything the table does not name is refused
    ("PATCH", "/api/v1/something/new", OTHER_WRITES),
    ("POST", "/api/v1/something/new", OTHER_WRITES),
    ("WEBSOCKET", "/api/v1/other/stream", OTHER_WRITES),
]


@pytest.mark.parametrize(("method", "path"), ALLOWED)
def test_allowed(method, path):
    assert demo_restriction(method, path) is None


@pytest.mark.parametrize(("method", "path", "operation"), BLOCKED)
def test_blocked(method, path, operation):
    assert demo_restriction(method, path) == operation


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/storage/records/abc/"),
        ("DELETE", "/storage/records/abc"),
        ("Delete", "/api/v1/storage/records/abc"),
    ],
)
def test_method_case_prefix_and_trailing_slash_do_not_matter(method, path):
    assert demo_restriction(method, path) == DELETES


def test_a_path_segment_pattern_does_not_span_segments():
    # `{session_id}` is one segment: a longer path is not the session's own delete.
    assert demo_restriction("DELETE", "/api/v1/demo/sessions/a/b") == DELETES
    assert demo_restriction("POST", "/api/v1/demo/sessions/a/b/extend") == OTHER_WRITES


def test_restriction_error_has_the_demo_shape():
    error = restriction_error(BILLING)
    assert error.status_code == 403
    assert error.error == "demo_restriction"
    assert error.message.startswith("Billing is not available in a demo session")
