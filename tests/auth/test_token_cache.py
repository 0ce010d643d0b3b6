"""The cache of verified access tokens is shared by the event loop and the threads that
run routes' sync dependencies: it must hold up when both use it at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from app.auth.security import InvalidToken, TokenCodec
from tests.support.settings import make_settings


def test_threads_decoding_through_a_full_cache_all_get_their_claims(tmp_path: Path):
    codec = TokenCodec(make_settings("sqlite+aiosqlite://", tmp_path, ACCESS_CACHE_SIZE=32))
    tokens = [
        codec.encode("access", f"user-{n}", timedelta(minutes=15), tid=f"tenant-{n}").token
        for n in range(400)
    ]
    failures: list[BaseException] = []

    def decode_all(offset: int) -> None:
        try:
            for round_ in range(6):
                for n in range(offset, offset + len(tokens)):
                    token = tokens[(n * 7 + round_) % len(tokens)]
                    claims = codec.decode(token, "access")
                    assert claims["sub"] == f"user-{(n * 7 + round_) % len(tokens)}"
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=decode_all, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_cached_token_is_refused_once_it_expires(tmp_path: Path):
    now = [time.time()]
    settings = make_settings("sqlite+aiosqlite://", tmp_path)
    codec = TokenCodec(settings, clock=lambda: now[0])
    token = codec.encode("access", "user-1", timedelta(minutes=15)).token
    claims = codec.decode(token, "access")  # verified, and now cached
    now[0] = claims["exp"] + 1
    try:
        codec.decode(token, "access")
    except InvalidToken:
        pass
    else:
        raise AssertionError("an expired token was accepted from the cache")
