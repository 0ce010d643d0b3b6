"""The sanitizer's cost per token frame, and its corpora's figures.

Streams ordinary answers and leak attempts token by token through the WebSocket
sanitizer's frame path (decode the frame, redact, encode the frames to send) and
compares it with the same path without redaction (decode, encode), which every
frame pays anyway. Prints µs per frame, the ratio, and the corpora's catch rate
and false redactions.

    python -m bench.sanitizer
"""

from __future__ import annotations

import json
import time

from app.chat.server_text import server_texts
from app.gateway.redaction import REDACTED, Redactor
from bench.common import goal, machine_info
from tests.gateway.corpus import benign_cases, leak_cases, leaked_windows, server_windows
from tests.gateway.test_sanitizer import tokens

ROUNDS = 5


def _frames(texts: list[str]) -> list[list[str]]:
    return [[json.dumps({"token": t}) for t in tokens(text)] for text in texts]


def _baseline(streams: list[list[str]]) -> int:
    sent = 0
    for frames in streams:
        for raw in frames:
            frame = json.loads(raw)
            json.dumps(frame, ensure_ascii=False)
            sent += 1
    return sent


def _sanitized(redactor: Redactor, streams: list[list[str]]) -> int:
    sent = 0
    for frames in streams:
        stream = redactor.stream()
        for raw in frames:
            frame = json.loads(raw)
            for safe in stream.feed_frames(frame["token"]):
                json.dumps({"token": safe}, ensure_ascii=False)
            sent += 1
        stream.flush()
    return sent


def _per_frame(run, *args) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        frames = run(*args)
        best = min(best, (time.perf_counter() - started) / frames)
    return best * 1e6


def main() -> None:
    print(f"sanitizer · {machine_info()}")
    started = time.perf_counter()
    redactor = Redactor.build(server_texts(), on_redact=lambda category: None)
    built_ms = (time.perf_counter() - started) * 1000
    print(
        f"index: {len(redactor.server.shingles)} runs of 8 words from "
        f"{len(server_texts())} server texts, built in {built_ms:.1f} ms"
    )
    benign, leaks = benign_cases(), leak_cases()
    streams = _frames(benign * 4) + _frames([leak.text for leak in leaks[::10]])
    base = _per_frame(_baseline, streams)
    full = _per_frame(_sanitized, redactor, streams)
    print(f"frames per round: {sum(map(len, streams))}")
    print(f"frame path without redaction: {base:.2f} µs per token frame")
    print(f"frame path with the sanitizer: {full:.2f} µs per token frame ({full / base:.2f}×)")
    goal(
        "Sanitizer cost per token frame", f"{full - base:.1f} µs added", "< 20 µs", full - base < 20
    )

    windows = server_windows()
    caught = sum(
        1
        for leak in leaks
        if REDACTED in (out := redactor.redact(leak.text)) and not leaked_windows(out, windows)
    )
    changed = sum(1 for text in benign if redactor.redact(text) != text)
    print(
        f"leak attempts caught: {caught}/{len(leaks)}; "
        f"benign texts changed: {changed}/{len(benign)}"
    )
    goal(
        "Sanitizer leak attempts caught",
        f"{100 * caught / len(leaks):.1f} %",
        "100 %",
        caught == len(leaks),
    )
    goal("Sanitizer false redactions", str(changed), "0", changed == 0)


if __name__ == "__main__":
    main()
