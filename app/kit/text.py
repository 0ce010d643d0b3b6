"""Text no database can store: NUL characters and lone UTF-16 surrogates, and JSON too deep.

Pure functions, shared by the gateway's input guard and by routes that read raw
bodies themselves (the signed webhook).
"""

from __future__ import annotations

import re
from typing import Any

BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# Deeper than any document of this API; a manifest has its own, smaller bound.
MAX_JSON_DEPTH = 64

Location = tuple[str | int, ...]


def has_bad_text(text: str) -> bool:
    return BAD_TEXT.search(text) is not None


def find_bad_json(value: Any, max_depth: int = MAX_JSON_DEPTH) -> tuple[Location, str] | None:
    """The location of the first bad string or key, or of the first level too deep.

    Iterative, so a deeply nested document cannot exhaust the stack here.
    """
    stack: list[tuple[Any, Location]] = [(value, ())]
    while stack:
        item, location = stack.pop()
        if len(location) > max_depth:
            return location, "depth"
        if isinstance(item, str):
            if has_bad_text(item):
                return location, "text"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and has_bad_text(key):
                    return (*location, key), "text"
                stack.append((child, (*location, key)))
        elif isinstance(item, list):
            stack.extend((child, (*location, index)) for index, child in enumerate(item))
    return None
