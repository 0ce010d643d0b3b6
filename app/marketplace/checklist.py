"""The automated checklist every submitted manifest passes before an admin sees it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from app.marketplace.schemas import ChecklistFailure

ID_PATTERN = re.compile(r"^[a-z0-9-]+$")
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
BASE64_RUN = re.compile(r"^[A-Za-z0-9+/=_\-\r\n]+$")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

PERMISSION_ACTIONS = ("read", "write")
PERMISSION_SCOPES = ("tasks", "projects", "notes", "checkpoints", "calendar")
ALLOWED_PERMISSIONS = frozenset(f"{a}:{s}" for a in PERMISSION_ACTIONS for s in PERMISSION_SCOPES)
# Paths under /plugins/ that a plugin id would shadow.
RESERVED_IDS = frozenset({"earnings"})

MAX_MANIFEST_BYTES = 64 * 1024
# Levels of objects and lists below the manifest itself.
MAX_MANIFEST_DEPTH = 16
# A paid plugin costs 0.99 to 999.99 (integer cents); 0 is free.
MIN_PRICE_CENTS = 99
MAX_PRICE_CENTS = 999_99
# A long run of base64 alphabet is an embedded file, not a description.
BLOB_MIN_LENGTH = 256


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value and key of a JSON document with its depth; iterative, so any depth is safe."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((str(key), depth + 1))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _depth(value: Any) -> int:
    return max(depth for _, depth in _walk(value))


def _looks_binary(text: str) -> bool:
    if CONTROL_CHARS.search(text):
        return True
    if text.startswith("data:") and ";base64," in text[:200]:
        return True
    return len(text) >= BLOB_MIN_LENGTH and bool(BASE64_RUN.match(text))


def run_checklist(manifest: dict[str, Any]) -> list[ChecklistFailure]:
    """Every rule the manifest breaks, by name (empty when it passes)."""
    failures: list[ChecklistFailure] = []

    def fail(rule: str, message: str) -> None:
        failures.append(ChecklistFailure(rule=rule, message=message))

    plugin_id = manifest.get("id")
    if not isinstance(plugin_id, str) or not ID_PATTERN.match(plugin_id) or len(plugin_id) > 64:
        fail("id_format", "id must match ^[a-z0-9-]+$ (at most 64 characters).")
    elif plugin_id in RESERVED_IDS:
        fail("id_format", f"id {plugin_id!r} is reserved.")

    name = manifest.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        fail("name_present", "name must be a non-empty string of at most 200 characters.")

    description = manifest.get("description", "")
    if not isinstance(description, str) or len(description) > 4000:
        fail("description_format", "description must be a string of at most 4000 characters.")

    version = manifest.get("version")
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        fail("version_format", "version must be semantic (MAJOR.MINOR.PATCH).")

    category = manifest.get("category")
    if not isinstance(category, str) or not CATEGORY_PATTERN.match(category):
        fail("category_format", "category must match ^[a-z][a-z0-9-]{0,63}$.")

    price = manifest.get("price_cents", 0)
    currency = manifest.get("currency", "EUR")
    if (
        not isinstance(price, int)
        or isinstance(price, bool)
        or not (price == 0 or MIN_PRICE_CENTS <= price <= MAX_PRICE_CENTS)
        or not isinstance(currency, str)
        or not CURRENCY_PATTERN.match(currency)
    ):
        fail(
            "price_format",
            "price_cents must be 0 (free) or a whole number of cents from "
            f"{MIN_PRICE_CENTS} to {MAX_PRICE_CENTS}, currency a three-letter ISO code.",
        )

    permissions = manifest.get("permissions", [])
    if not isinstance(permissions, list):
        fail("permissions_allowed", "permissions must be a list.")
    else:
        refused = [p for p in permissions if not isinstance(p, str) or p not in ALLOWED_PERMISSIONS]
        if refused:
            fail(
                "permissions_allowed",
                f"permissions not allowed: {', '.join(map(str, refused[:10]))}; "
                f"allowed are {', '.join(sorted(ALLOWED_PERMISSIONS))}.",
            )

    if _depth(manifest) > MAX_MANIFEST_DEPTH:
        # Too deep to measure or store safely: the rules below would recurse through it.
        fail("manifest_depth", f"the manifest may nest at most {MAX_MANIFEST_DEPTH} levels.")
        return failures

    if any(isinstance(text, str) and _looks_binary(text) for text, _ in _walk(manifest)):
        fail("no_binary_blobs", "the manifest must not embed binary data (base64, data: URIs).")

    size = len(json.dumps(manifest, ensure_ascii=False).encode())
    if size > MAX_MANIFEST_BYTES:
        fail("manifest_size", f"the manifest must be at most {MAX_MANIFEST_BYTES} bytes.")
    return failures
