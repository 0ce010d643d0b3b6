"""Entity tags and the conditional headers of RFC 9110 §13 (`If-None-Match`, `If-Match`).

A stored object's entity tag is its SHA-256, quoted: strong (the same tag means the
same bytes) and one a client can compute from its own encrypted copy, so it needs
to keep no extra state to send `If-Match`.
"""

from __future__ import annotations

from app.errors import AppError


def etag_of(checksum: str) -> str:
    return f'"{checksum.lower()}"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` matches (weak comparison): a GET answers 304."""
    if not if_none_match:
        return False
    tags = _tags(if_none_match)
    return "*" in tags or any(_opaque(tag) == etag for tag in tags)


def match_checksums(if_match: str | None) -> list[str] | None:
    """The checksums `If-Match` accepts (strong comparison); None when any version will do.

    A weak or malformed tag can never match, so it is left out (and a header of
    nothing else matches no version at all).
    """
    if if_match is None:
        return None
    tags = _tags(if_match)
    if "*" in tags:
        return None
    return [
        tag[1:-1].lower()
        for tag in tags
        if len(tag) >= 2 and tag[0] == tag[-1] == '"' and not tag.startswith("W/")
    ]


def precondition_failed(what: str, current_etag: str | None) -> AppError:
    return AppError(
        f"The {what} has changed since the version `If-Match` names; read it again, then retry.",
        error="precondition_failed",
        status_code=412,
        headers={"ETag": current_etag} if current_etag else None,
    )
