"""Keyword understanding for the offline `demo` model: intent, tool choice, arguments.

Deterministic and local. It reads the user's message and the workspace context the
agents put in their prompt, and decides which tool calls a capable model would
make: "add a task to call Anna tomorrow, high priority" becomes `create_task`
with {"title": "Call Anna", "due_date": <tomorrow>, "priority": "high"}.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

AGENT_NOUNS: dict[str, tuple[str, ...]] = {
    "task_agent": ("task", "tasks", "todo", "todos", "to-do", "to-dos", "comment", "comments"),
    "project_agent": ("project", "projects"),
    "checkpoint_agent": ("checkpoint", "checkpoints", "milestone", "milestones"),
    "note_agent": ("note", "notes"),
}
_NOUN_AGENT = {noun: agent for agent, nouns in AGENT_NOUNS.items() for noun in nouns}
_VERBS = (
    "add|create|make|new|list|show|display|get|find|open|read|delete|remove|drop|update|"
    "rename|mark|complete|finish|archive|unarchive|restore|set|change|move|write|jot|"
    "approve|edit|append|what|which|give|start|reopen|plan|schedule|need|with"
)
_VERB_NOUN = re.compile(
    rf"\b(?:{_VERBS})\b\W+(?:[\w'-]+\W+){{0,3}}?({'|'.join(map(re.escape, _NOUN_AGENT))})\b",
    re.I,
)
_HINTS: dict[str, tuple[str, ...]] = {
    "task_agent": ("remind", "due", "call ", "email ", "buy ", "to do", "deadline"),
    "note_agent": ("write down", "jot", "summary", "memo", "journal"),
    "checkpoint_agent": ("milestone",),
}

CREATE = re.compile(
    r"\b(add|create|make|new|remind me|schedule|write|jot|need to|set up|start a)\b", re.I
)
DELETE = re.compile(r"\b(delete|remove|drop|cancel|get rid of|trash|archive)\b", re.I)
UPDATE = re.compile(
    r"\b(mark|complete|completed|finish|finished|rename|change|set|move|update|edit|"
    r"reopen|start|started|approve|approved|unarchive|restore|reactivate|append|"
    r"prioriti[sz]e|postpone|reschedule|done|reached|missed)\b",
    re.I,
)
LIST = re.compile(r"\b(list|show|what|which|display|find|all|any|overview|how many)\b", re.I)

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DATE_PHRASE = re.compile(
    r"\b(?:(?:due|by|on|for|until|before)\s+)?(?:"
    r"(?:the\s+)?day after tomorrow|today|tonight|tomorrow|"
    r"(?:next|this)\s+(?:week|month)|end of (?:the )?(?:week|month)|"
    r"(?:next\s+|this\s+)?(?:" + "|".join(_WEEKDAYS) + r")|"
    r"in\s+\d{1,3}\s+(?:days?|weeks?)|\d{4}-\d{2}-\d{2})\b",
    re.I,
)
_PRIORITY = re.compile(
    r"\b(?:(high|medium|low|top|urgent|normal)(?:[\s-]+priority)?|priority\s*(?:is\s*|:\s*)?"
    r"(high|medium|low))\b",
    re.I,
)
_PRIORITY_WORDS = {"top": "high", "urgent": "high", "normal": "medium"}
_QUOTED = re.compile(r"[\"“']([^\"“”']{2,120})[\"”']")
_STOP = frozenset(
    """
    a an the to of for on in at by and or my me i it is be as with from into this that task
    tasks note notes project projects checkpoint checkpoints milestone milestones please
    add create new make mark set change update delete remove show list all as done high low
    medium priority due today tomorrow comment comments called named titled about
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def classify(message: str) -> list[str]:
    """Agents the message asks for, in order; at least one (task_agent by default)."""
    found: list[str] = []
    for match in _VERB_NOUN.finditer(message):
        noun = match.group(1).lower()
        # A compound's last noun is its head: "the release notes task" is a task.
        following = re.match(r"\s+([\w-]+)", message[match.end() :])
        if following and following.group(1).lower() in _NOUN_AGENT:
            noun = following.group(1).lower()
        agent = _NOUN_AGENT[noun]
        if agent not in found:
            found.append(agent)
    if found:
        return found
    text = message.lower()
    scores = {
        agent: sum(1 for w in words(text) if w in nouns)
        + sum(1 for hint in _HINTS.get(agent, ()) if hint in text)
        for agent, nouns in AGENT_NOUNS.items()
    }
    best = max(scores.values())
    if best == 0:
        return ["task_agent"]
    return [agent for agent, score in scores.items() if score == best][:1]


def parse_date(text: str, today: dt.date) -> dt.date | None:
    try:
        return _parse_date(text, today)
    except OverflowError:
        # A relative date past year 9999: no date at all rather than a wrong one.
        return None


def _parse_date(text: str, today: dt.date) -> dt.date | None:
    match = _DATE_PHRASE.search(text)
    if not match:
        return None
    phrase = match.group(0).lower()
    phrase = re.sub(r"^(due|by|on|for|until|before)\s+", "", phrase)
    if iso := re.search(r"\d{4}-\d{2}-\d{2}", phrase):
        try:
            return dt.date.fromisoformat(iso.group(0))
        except ValueError:
            return None
    if "day after tomorrow" in phrase:
        return today + dt.timedelta(days=2)
    if phrase in ("today", "tonight"):
        return today
    if phrase == "tomorrow":
        return today + dt.timedelta(days=1)
    if in_n := re.match(r"in\s+(\d+)\s+(day|week)", phrase):
        n = int(in_n.group(1))
        return today + dt.timedelta(days=n * (7 if in_n.group(2) == "week" else 1))
    if phrase.endswith("week"):
        if phrase.startswith("next"):
            return today + dt.timedelta(days=7 - today.weekday())
        return today + dt.timedelta(days=4 - today.weekday() if today.weekday() < 4 else 0)
    if phrase.endswith("month"):
        first_next = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        if phrase.startswith("next"):
            return first_next
        return first_next - dt.timedelta(days=1)
    for index, name in enumerate(_WEEKDAYS):
        if name in phrase:
            ahead = (index - today.weekday()) % 7 or 7
            if phrase.startswith("next") and ahead < 7:
                ahead += 7 if today.weekday() < index else 0
            return today + dt.timedelta(days=ahead)
    return None


def parse_priority(text: str) -> str | None:
    match = _PRIORITY.search(text)
    if not match:
        return None
    word = (match.group(1) or match.group(2)).lower()
    return _PRIORITY_WORDS.get(word, word)


def parse_task_status(text: str) -> str | None:
    lowered = text.lower()
    if re.search(r"\b(in progress|in-progress|start|started|working on|begin)\b", lowered):
        return "in_progress"
    if re.search(r"\b(reopen|not done|to do|todo|undo)\b", lowered):
        return "todo"
    if re.search(r"\b(done|complete|completed|finish|finished|close|closed)\b", lowered):
        return "done"
    return None


def _clean_title(raw: str) -> str:
    text = _DATE_PHRASE.sub(" ", raw)
    text = _PRIORITY.sub(" ", text)
    text = re.sub(r"\b(?:with|at|and)\s*$", "", text.strip(), flags=re.I)
    text = re.sub(r"\s+", " ", text).strip(" .,;:!-")
    text = re.sub(r"^(?:a|an|the)\s+", "", text, flags=re.I)
    return text[:1].upper() + text[1:] if text else text


def extract_title(message: str, nouns: tuple[str, ...]) -> str | None:
    """The name of a new item: a quoted string, or the words after its noun."""
    if quoted := _QUOTED.search(message):
        return _clean_title(quoted.group(1))
    noun = "|".join(map(re.escape, nouns))
    patterns = [
        rf"\b(?:{noun})\b\s*(?:to|:|called|named|titled|for|about|that says)?\s+(.+)",
        r"\bremind me to\s+(.+)",
        r"\bi need to\s+(.+)",
    ]
    for pattern in patterns:
        if match := re.search(pattern, message, re.I):
            rest = match.group(1)
            rest = re.split(
                r"[,;:\n]|\s(?:in|to|for|under|of)\s+(?:the\s+)?(?:[\w'-]+\s+){0,4}?project\b|"
                r"\s(?:with|and (?:set|mark|make|add|link))\b|\.\s",
                rest,
                maxsplit=1,
                flags=re.I,
            )[0]
            title = _clean_title(rest)
            if title:
                return title[:200]
    return None


def extract_body(message: str) -> str | None:
    """Free text after a colon, or after 'saying' / 'that says'."""
    match = re.search(
        r"(?::|\bsaying\b|\bthat says\b|\bwith the text\b)\s*(.+)$", message, re.I | re.S
    )
    if match and match.group(1).strip():
        return match.group(1).strip().strip('"“”')
    return None


def find_item(items: list[dict[str, Any]], text: str, field: str) -> dict[str, Any] | None:
    """The item whose `field` the message names: a full mention first, then word overlap."""
    lowered = text.lower()
    named = [
        i for i in items if str(i.get(field) or "").strip() and str(i[field]).lower() in lowered
    ]
    if named:
        return max(named, key=lambda i: len(str(i[field])))
    wanted = {w for w in words(text) if w not in _STOP and len(w) > 2}
    best, best_score = None, 0
    for item in items:
        score = len(wanted & {w for w in words(str(item.get(field) or "")) if w not in _STOP})
        if score > best_score:
            best, best_score = item, score
    return best
