"""What the sanitizer removes, and how it finds it in a stream cut into chunks.

Patterns are compiled into one case-insensitive alternation. A stream keeps
back only the tail that could still grow into a match (the `regex` module's
partial matching), so ordinary text flows out at once and a fragment split
across chunks is still caught whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import regex

log = logging.getLogger("app.gateway.sanitizer")

REDACTED = "[REDACTED]"
# A held-back tail never grows beyond this: an unclosed <think> block is dropped instead.
# Patterns must not end in an optional part (it could not be told apart from the end
# of a chunk); fragments of any length are fine.
MAX_HOLD = 4096

BUILTIN_PATTERNS: dict[str, list[str]] = {
    "reasoning": [
        r"<think>.*?</think>",
        r"\[/?INST\]",
        r"<\|im_(?:start|end)\|>",
    ],
    "system_prompt": [
        r"<</?SYS>>",
        r"\bsystem\s+prompt\s*:",
        r"\bmy\s+(?:system\s+)?instructions\s+(?:are|say)\s*:",
        r"\byou\s+are\s+(?:the\s+)?(?:adiuva\s+)?(?:task|project|checkpoint|note|router)[\s_-]agent\b",
    ],
    "routing": [
        r"\broute_to\s*[:=]",
        r"\brouting[\s_-]decision\s*[:=]",
        r"\bintent[\s_-]classification\s*[:=]",
    ],
    "tool_schema": [
        r"\"type\"\s*:\s*\"function\"\s*,\s*\"function\"\s*:",
        r"\"parameters\"\s*:\s*\{\s*\"type\"\s*:\s*\"object\"",
        r"\"input_schema\"\s*:\s*\{",
    ],
}


def fingerprint_pattern(text: str) -> str:
    """A literal fragment, matched with any whitespace between its words."""
    words = text.split()
    return r"\s+".join(regex.escape(word) for word in words)


@dataclass
class Redactor:
    patterns: dict[str, list[str]]
    on_redact: Callable[[str], None] = field(default=lambda category: None)

    def __post_init__(self) -> None:
        groups = []
        self._categories: list[str] = []
        for category, items in self.patterns.items():
            for item in items:
                self._categories.append(category)
                groups.append(f"({item})")
        self._pattern = regex.compile("|".join(groups), regex.IGNORECASE | regex.DOTALL)
        self._think_open = regex.compile(r"<think>", regex.IGNORECASE)

    @classmethod
    def build(
        cls, fingerprints: Iterable[str] = (), on_redact: Callable[[str], None] | None = None
    ) -> Redactor:
        patterns = {key: list(value) for key, value in BUILTIN_PATTERNS.items()}
        prints = sorted({f.strip() for f in fingerprints if len(f.strip()) >= 12}, key=len)
        if prints:
            patterns["fingerprint"] = [fingerprint_pattern(p) for p in reversed(prints)]
        return cls(patterns, on_redact or _log_redaction)

    def _category(self, match: regex.Match) -> str:
        return self._categories[match.lastindex - 1] if match.lastindex else "unknown"

    def redact(self, text: str) -> str:
        """Redact a complete text; an unclosed <think> block runs to the end."""

        def replace(match: regex.Match) -> str:
            self.on_redact(self._category(match))
            return REDACTED

        cleaned = self._pattern.sub(replace, text)
        opened = self._think_open.search(cleaned)
        if opened:
            self.on_redact("reasoning")
            cleaned = cleaned[: opened.start()] + REDACTED
        return cleaned

    def redact_json(self, value: Any) -> Any:
        """Redact every string value of a decoded JSON document (keys are ours)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_json(item) for item in value]
        if isinstance(value, dict):
            return {key: self.redact_json(item) for key, item in value.items()}
        return value

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Feed chunks, get back what is safe to send now; `flush()` at the end."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.pending = ""
        self.in_think = False

    def feed(self, chunk: str) -> str:
        text = self.pending + chunk
        self.pending = ""
        out: list[str] = []
        pos = 0
        if self.in_think:
            end = regex.search(r"</think>", text, regex.IGNORECASE, partial=True)
            if end is None or end.partial:
                self.pending = text[end.start() :] if end is not None else ""
                return ""
            self.in_think = False
            pos = end.end()
        pattern = self.redactor._pattern
        while True:
            match = pattern.search(text, pos, partial=True)
            if match is None:
                out.append(text[pos:])
                break
            # A match reaching the end of what we have may still grow (optional tails):
            # hold it back like a partial one until more text or the end of the stream.
            if match.partial or match.end() == len(text):
                out.append(text[pos : match.start()])
                held = text[match.start() :]
                if len(held) > MAX_HOLD:
                    if self.redactor._think_open.match(held):
                        self.redactor.on_redact("reasoning")
                        out.append(REDACTED)
                        self.in_think = True
                    else:  # no real fragment is this long: let one character go on
                        out.append(held[0])
                        pos = match.start() + 1
                        continue
                else:
                    self.pending = held
                break
            out.append(text[pos : match.start()])
            self.redactor.on_redact(self.redactor._category(match))
            out.append(REDACTED)
            pos = match.end()
        return "".join(out)

    def flush(self) -> str:
        if self.in_think:
            self.pending, self.in_think = "", False
            return ""
        text, self.pending = self.pending, ""
        return self.redactor.redact(text) if text else ""


def _log_redaction(category: str) -> None:
    log.warning("sanitizer redacted prompt material", extra={"category": category})
