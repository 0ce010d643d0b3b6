"""What the sanitizer removes, and how it finds it in a stream cut into frames.

**Server material**: any run of `SHINGLE` (8) consecutive words of a server prompt,
template or tool definition, wherever it starts and however it is cased,
punctuated or spaced (a word is a run of letters and digits). Words are compared
by a skeleton: compatibility forms folded (full-width letters), invisible format
characters (zero-width spaces, soft hyphens) and combining marks dropped, and
letters that pass for Latin ones (Cyrillic `о`, Greek `ο`…) read as those. A run
broken up by other words every few words (a filler word every seventh) is not
found: fewer than `SHINGLE` words of server text in a row are not redacted. The server's texts
are indexed once, at start-up, as hashes of their word n-grams (n = 1…8; a
template placeholder ends a run). An answer is read word by word with a rolling
hash over its last eight words: each word costs a few integer operations and a
set lookup, whatever the size of the prompts. A run is replaced by one
`[REDACTED]`, however long it is. A run that is also in the request's own text
(its message, context or history) is the caller's, and stays.

**Streams**: a stream holds back only the words that could still become part of
a run — the longest tail of its words that is itself a run of server text, and a
last word still growing while it is the start of a server word. Ordinary text
flows out at once; a run split across frames at any point is caught whole.

**Reasoning blocks** (`<think>…</think>` and the like) are removed from the
output — not marked — unless the request's own text has the tag.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

from confusable_homoglyphs.confusables import confusables_data

log = logging.getLogger("app.gateway.sanitizer")

REDACTED = "[REDACTED]"
SHINGLE = 8  # words: the shortest run of server text that is redacted
SERVER_TEXT = "server_text"
REASONING = "reasoning"

# Inside a word: invisible format characters and combining marks, which an answer can
# slip between letters without changing what a reader sees.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff"
)
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_WORD = re.compile(rf"[^\W_](?:[^\W_]|[{_INVISIBLE}{_MARKS}])*")


def _latin_lookalikes() -> dict[int, str]:
    """Letters and digits of other scripts that are read as an ASCII one (Unicode's
    confusables data, as the confusable-homoglyphs package ships it)."""
    table: dict[int, str] = {}
    for char, glyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            if len(glyph["c"]) == 1 and glyph["c"].isascii() and glyph["c"].isalnum():
                table[ord(char)] = glyph["c"].lower()
                break
    return table


_LOOKALIKES = _latin_lookalikes()


def skeleton(word: str) -> str:
    """A word as compared: lower case, and what a reader would take it for."""
    if word.isascii():
        return word.lower()
    folded = unicodedata.normalize("NFKD", word)
    kept = "".join(
        c for c in folded if not unicodedata.combining(c) and unicodedata.category(c) != "Cf"
    )
    return kept.translate(_LOOKALIKES).lower()


_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_MOD = (1 << 61) - 1  # a Mersenne prime: hashes of runs are polynomials modulo it
_BASE = 1_000_000_007
_POWERS = [pow(_BASE, k, _MOD) for k in range(SHINGLE + 1)]
# A word that cannot be server text (the rest of one already sent): no run holds it.
_NOT_SERVER = _MOD

REASONING_TAGS = ("think", "thinking", "reasoning", "reflection")
_OPEN_TAGS = tuple(f"<{tag}>" for tag in REASONING_TAGS)
_OPEN = re.compile(r"<(" + "|".join(REASONING_TAGS) + r")>", re.IGNORECASE)
_CLOSE = {tag: re.compile(rf"</{tag}>", re.IGNORECASE) for tag in REASONING_TAGS}
_LONGEST_TAG = max(len(t) for t in _OPEN_TAGS) + 1


def _word_hash(word: str) -> int:
    return hash(word) % _MOD


def words(text: str) -> list[str]:
    """The text's words as compared: skeletons of its runs of letters and digits."""
    return [skeleton(word) for word in _WORD.findall(text)]


class ServerText:
    """Hashes of every word n-gram (n ≤ SHINGLE) of the server's texts, built once."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.grams: list[set[int]] = [set() for _ in range(SHINGLE + 1)]
        self.prefixes: set[str] = set()
        for text in texts:
            for segment in _PLACEHOLDER.split(text):
                self._add(words(segment))

    def _add(self, segment: list[str]) -> None:
        if len(segment) < SHINGLE:  # no run of SHINGLE words can come from it
            return
        hashes = [_word_hash(w) for w in segment]
        for word in segment:
            self.prefixes.update(word[:end] for end in range(1, len(word) + 1))
        for start in range(len(hashes)):
            value = 0
            for k in range(1, min(SHINGLE, len(hashes) - start) + 1):
                value = (value * _BASE + hashes[start + k - 1]) % _MOD
                self.grams[k].add(value)

    @property
    def shingles(self) -> set[int]:
        return self.grams[SHINGLE]

    def shingles_of(self, texts: Iterable[str]) -> frozenset[int]:
        """The server's runs that also occur in `texts`."""
        found = set()
        server = self.shingles
        for text in texts:
            hashes = [_word_hash(w) for w in words(text)]
            for end in range(SHINGLE, len(hashes) + 1):
                value = 0
                for h in hashes[end - SHINGLE : end]:
                    value = (value * _BASE + h) % _MOD
                if value in server:
                    found.add(value)
        return frozenset(found)


class RequestText:
    """The request's own text (every string of its JSON), read only if a check needs it."""

    def __init__(self, server: ServerText, raw: Callable[[], bytes | str] | None = None) -> None:
        self.server = server
        self._raw = raw

    @cached_property
    def strings(self) -> list[str]:
        raw = self._raw() if self._raw is not None else b""
        if not raw:
            return []
        try:
            document = json.loads(raw)
        except ValueError:
            return [raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw]
        found: list[str] = []
        _strings(document, found)
        return found

    @cached_property
    def shingles(self) -> frozenset[int]:
        return self.server.shingles_of(self.strings)

    @cached_property
    def _lowered(self) -> str:
        return "\n".join(self.strings).lower()

    def contains(self, fragment: str) -> bool:
        return fragment.lower() in self._lowered


def _strings(value: Any, found: list[str]) -> None:
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, found)
    elif isinstance(value, list):
        for item in value:
            _strings(item, found)


class Redactor:
    """The server's texts, indexed; hands out a `StreamRedactor` per response."""

    def __init__(self, server: ServerText, on_redact: Callable[[str], None] | None = None) -> None:
        self.server = server
        self.on_redact = on_redact or _log_redaction

    @classmethod
    def build(
        cls, texts: Iterable[str] = (), on_redact: Callable[[str], None] | None = None
    ) -> Redactor:
        return cls(ServerText(texts), on_redact)

    def request(self, raw: Callable[[], bytes | str] | None = None) -> RequestText:
        return RequestText(self.server, raw)

    def stream(self, request: RequestText | None = None) -> StreamRedactor:
        return StreamRedactor(self, request or RequestText(self.server))

    def redact(self, text: str, request: RequestText | None = None) -> str:
        """A complete text (an unclosed reasoning block runs to its end)."""
        stream = self.stream(request)
        return stream.feed(text) + stream.flush()

    def redact_json(self, value: Any, request: RequestText | None = None) -> Any:
        """Every string value of a decoded JSON document (keys are ours)."""
        request = request or RequestText(self.server)
        if isinstance(value, str):
            return self.redact(value, request)
        if isinstance(value, list):
            return [self.redact_json(item, request) for item in value]
        if isinstance(value, dict):
            return {key: self.redact_json(item, request) for key, item in value.items()}
        return value


class _ReasoningFilter:
    """Drops reasoning blocks from a stream; holds back only what may be half a tag."""

    __slots__ = ("inside", "on_redact", "pending", "request")

    def __init__(self, request: RequestText, on_redact: Callable[[str], None]) -> None:
        self.request = request
        self.on_redact = on_redact
        self.inside: str | None = None
        self.pending = ""

    def feed(self, text: str) -> str:
        if not self.pending and self.inside is None and "<" not in text:
            return text  # the usual frame
        text, self.pending = self.pending + text, ""
        out: list[str] = []
        pos = 0
        while True:
            if self.inside is not None:
                close = _CLOSE[self.inside].search(text, pos)
                if close is None:
                    self.pending = _tag_start(text, f"</{self.inside}>")
                    return "".join(out)
                self.inside, pos = None, close.end()
                continue
            opened = _OPEN.search(text, pos)
            if opened is None:
                cut = text.rfind("<", pos)
                if cut >= 0 and len(text) - cut < _LONGEST_TAG and _may_open(text[cut:]):
                    out.append(text[pos:cut])
                    self.pending = text[cut:]
                else:
                    out.append(text[pos:])
                return "".join(out)
            if self.request.contains(opened.group(0)):  # the caller's own text
                out.append(text[pos : opened.end()])
                pos = opened.end()
                continue
            out.append(text[pos : opened.start()])
            self.on_redact(REASONING)
            self.inside, pos = opened.group(1).lower(), opened.end()

    def flush(self) -> str:
        """The end: an unclosed block is dropped, half a tag is text."""
        rest, self.pending = self.pending, ""
        if self.inside is not None:
            self.inside = None
            return ""
        return rest


def _may_open(tail: str) -> bool:
    tail = tail.lower()
    return any(tag.startswith(tail) for tag in _OPEN_TAGS)


def _tag_start(text: str, tag: str) -> str:
    """The end of `text` that may be the start of `tag`, kept for the next frame."""
    lowered = text[-len(tag) :].lower()
    for size in range(min(len(tag) - 1, len(lowered)), 0, -1):
        if tag.startswith(lowered[-size:]):
            return text[-size:]
    return ""


class StreamRedactor:
    """Feed a response's text frame by frame, get back what is safe to send now;
    `flush()` at the end. One per response: it remembers the last words."""

    def __init__(self, redactor: Redactor, request: RequestText) -> None:
        self.server = redactor.server
        self.on_redact = redactor.on_redact
        self.request = request
        self.reasoning = _ReasoningFilter(request, redactor.on_redact)
        self.buf = ""  # text not sent yet
        self.words: list[tuple[int, int]] = []  # complete words still in `buf`
        self.hashes: list[int] = []  # the last SHINGLE words' hashes, sent or not
        self.rolling = 0  # the hash of the run of those words
        self.scan = 0  # where in `buf` the next word may start
        self.joined = False  # the last word ended a redacted run: the next may extend it
        self.glued = False  # `buf` starts inside a word already sent
        self.redacted = False  # the last step redacted a run

    def feed(self, chunk: str) -> str:
        return "".join(self.feed_frames(chunk))

    def feed_frames(self, chunk: str) -> list[str]:
        """As `feed`, with text held from earlier frames as a frame of its own, so a
        stream keeps its pace: what was held goes out first, then this frame's text."""
        chunk = self.reasoning.feed(chunk)
        if not chunk:
            return []
        carried = len(self.buf)
        self.buf += chunk
        out = self._advance(final=False)
        if carried and len(out) > carried and not self.redacted:
            # Nothing redacted: `out` is the held text, then the start of this frame.
            return [out[:carried], out[carried:]]
        return [out] if out else []

    def flush(self) -> str:
        self.buf += self.reasoning.flush()
        out = self._advance(final=True)
        self.buf, self.words, self.scan = "", [], 0
        return out

    def _advance(self, *, final: bool) -> str:
        buf = self.buf
        if self.glued and not _WORD.match(buf):
            self.glued = False  # the word sent last ended where the last frame did
        out: list[str] = []
        cut = 0  # `buf` before this is decided (sent or redacted)
        partial: re.Match[str] | None = None
        self.redacted = False
        for match in _WORD.finditer(buf, self.scan):
            start, end = match.span()
            if end == len(buf) and not final:
                partial = match  # may still grow in the next frame
                break
            if self.glued and start == 0:
                self._push(_NOT_SERVER)  # the rest of a word already sent
                self.glued = False
                continue
            self._push(_word_hash(skeleton(match.group())))
            self.words.append((start, end))
            if self._is_run():
                first = self.words[max(0, len(self.words) - SHINGLE)][0]
                if not self.joined:
                    out.append(buf[cut:first])
                    out.append(REDACTED)
                    self.on_redact(SERVER_TEXT)
                cut, self.joined, self.redacted = end, True, True
                self.words.clear()
            else:
                self.joined = False
        if final:
            out.append(buf[cut:])
            self.glued = self.joined = False
            return "".join(out)

        if partial is not None and (
            (self.glued and partial.start() == 0)
            or skeleton(partial.group()) not in self.server.prefixes
        ):
            # No server word starts so: nothing held can become a run. All goes out,
            # the unfinished word too; its rest, in the next frame, is not looked up.
            hold, scan = len(buf), 0
            self.glued, self.joined = True, False
        else:
            if self.joined:
                hold = cut  # what follows a redacted run is swallowed if the run goes on
            else:
                held_words = min(self._server_tail(), len(self.words))
                if held_words:
                    hold = self.words[-held_words][0]
                elif partial is not None:
                    hold = partial.start()
                else:
                    hold = len(buf)
            scan = (partial.start() if partial is not None else len(buf)) - hold
        out.append(buf[cut:hold])
        self.buf = buf[hold:]
        self.words = [(s - hold, e - hold) for s, e in self.words if s >= hold]
        self.scan = scan
        return "".join(out)

    def _push(self, value: int) -> None:
        hashes = self.hashes
        if len(hashes) == SHINGLE:
            self.rolling = (
                (self.rolling - hashes.pop(0) * _POWERS[SHINGLE - 1]) * _BASE + value
            ) % _MOD
        else:
            self.rolling = (self.rolling * _BASE + value) % _MOD
        hashes.append(value)

    def _is_run(self) -> bool:
        return (
            len(self.hashes) == SHINGLE
            and self.rolling in self.server.shingles
            and self.rolling not in self.request.shingles
        )

    def _server_tail(self) -> int:
        """How many of the last words (< SHINGLE) are, in order, a run of server text."""
        grams = self.server.grams
        hashes = self.hashes
        value = 0
        longest = 0
        for k in range(1, min(SHINGLE - 1, len(hashes)) + 1):
            value = (hashes[-k] * _POWERS[k - 1] + value) % _MOD
            if value not in grams[k]:
                break
            longest = k
        return longest


def _log_redaction(category: str) -> None:
    log.warning("sanitizer redacted prompt material", extra={"category": category})
