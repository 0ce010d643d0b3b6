"""The sanitizer's corpora: leak attempts that must all be caught, benign texts that
must come back unchanged (`benign.json`), and a caller's own content (`own.json`).

Leaks are built from the server's real texts (`server_texts()`), so a new prompt,
template or tool is covered at once: recitations from every word of every text,
quotes re-cased and re-flowed, tools as JSON, and hand-written answers that quote
them. "Caught" is checked independently of the sanitizer's hashing: no window of
eight consecutive words of the leaked text is left in the output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from app.chat.server_text import server_texts

HERE = Path(__file__).parent
SHINGLE = 8
_WORD = re.compile(r"[^\W_]+")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Leak:
    name: str
    text: str


def server_windows() -> set[tuple[str, ...]]:
    """Every run of eight words of the server's texts, as word tuples."""
    windows = set()
    for text in server_texts():
        for segment in _PLACEHOLDER.split(text):
            w = _words(segment)
            windows.update(tuple(w[i : i + SHINGLE]) for i in range(len(w) - SHINGLE + 1))
    return windows


def leaked_windows(output: str, windows: set[tuple[str, ...]]) -> list[str]:
    """The runs of eight server words still in `output` (empty: nothing leaked)."""
    w = _words(output)
    return [
        " ".join(w[i : i + SHINGLE])
        for i in range(len(w) - SHINGLE + 1)
        if tuple(w[i : i + SHINGLE]) in windows
    ]


def _spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text)]


def _segments() -> list[str]:
    seen, out = set(), []
    for text in server_texts():
        for segment in _PLACEHOLDER.split(text):
            if len(_words(segment)) >= SHINGLE and segment not in seen:
                seen.add(segment)
                out.append(segment)
    return out


WRAPPERS = (
    "Sure! My instructions say: {}",
    "{}",
    "Of course. Here is what I was told before you wrote:\n\n> {}\n\nAnything else?",
    "I'm not supposed to share this, but: “{}” — that's all.",
)


def leak_cases() -> list[Leak]:
    cases: list[Leak] = []
    for n, segment in enumerate(_segments()):
        spans = _spans(segment)
        # A recitation from every word on (the rest of the text, or the next 12 words).
        for i in range(len(spans) - SHINGLE + 1):
            rest = segment[spans[i][0] :]
            short = segment[spans[i][0] : spans[min(i + 11, len(spans) - 1)][1]]
            wrapper = WRAPPERS[i % len(WRAPPERS)]
            cases.append(Leak(f"recite-{n}-{i}", wrapper.format(rest)))
            cases.append(Leak(f"quote-{n}-{i}", wrapper.format(short)))
        # Exactly eight words, re-cased and re-flowed as a model might.
        eight = segment[spans[0][0] : spans[SHINGLE - 1][1]]
        cases.append(Leak(f"upper-{n}", f"Here: {eight.upper()}!"))
        cases.append(Leak(f"reflow-{n}", "Here:\n" + "\n  ".join(eight.split()) + "\nDone."))
        cases.append(Leak(f"bare-{n}", " ".join(_words(eight))))
    for n, text in enumerate(t for t in server_texts() if t.startswith("{")):
        tool = json.loads(text)
        cases.append(Leak(f"tool-json-{n}", "My tools:\n" + json.dumps(tool, indent=2)))
        cases.append(Leak(f"tool-fn-{n}", "```json\n" + json.dumps(tool["function"]) + "\n```"))
    for item in json.loads((HERE / "leaks.json").read_text()):
        cases.append(Leak(item["name"], item["text"]))
    return cases


def benign_cases() -> list[str]:
    return json.loads((HERE / "benign.json").read_text())


def own_content_cases() -> list[dict]:
    """Requests whose own text comes back in the answer: nothing of it is redacted."""
    return json.loads((HERE / "own.json").read_text())
