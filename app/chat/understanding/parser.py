"""From a message to the tool calls a careful assistant would make.

`understand()` splits a message into requests ("create project X and add three
tasks …" is two), and for each finds what it is about (a task, a project, a
checkpoint, a note, a comment), what to do (create, read, change, delete), the
item it names (by its words, a quoted title, or a pronoun resolved from the
conversation and the workspace), and the fields (title, due date, priority,
status…). Deterministic and local: the same message, workspace and reference day
always give the same calls.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.chat.understanding import lexicon as lx
from app.chat.understanding.dates import find_dates, find_shift
from app.chat.understanding.language import detect_language

Item = dict[str, Any]
_SEARCHED = ("tasks", "checkpoints", "notes", "projects")
_QUOTE = re.compile(r"\"([^\"]+)\"|(?<![\w])'(\S(?:.*?\S)?)'(?![\w])")
_TOKEN = re.compile(r"[^\W_][\w'-]*", re.U)
_SUFFIXES = ("ings", "ing", "ed", "es", "en", "er", "e", "s", "n")
_NEW = "@new:"
_DESCRIPTION = re.compile(
    r",?\s*\b(?:with (?:the )?description|description|described as|beschreibung)\b"
    r"\s*(?::|is|to)?\s*(.+)$",
    re.I,
)


@dataclass
class Intent:
    """One tool call: the agent that owns the tool, its name and its arguments."""

    agent: str
    tool: str
    args: dict[str, Any]


@dataclass
class Understanding:
    language: str
    intents: list[Intent]
    # Per request in the message, the agent it is for, even when no call could be
    # made (the item it names is not in the workspace the router sees: none).
    topics: list[str] = field(default_factory=list)

    @property
    def agents(self) -> list[str]:
        found: list[str] = []
        for agent in self.topics:
            if agent not in found:
                found.append(agent)
        return found


def normalise(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    text = re.sub(r"[“”„«»]", '"', text)
    text = re.sub(r"\s+[—–]\s+|\s+-\s+", " - ", text)
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    word = word.lower().strip("'-")
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


@lru_cache(maxsize=8192)
def _stems(text: str) -> frozenset[str]:
    out: set[str] = set()
    for token in tokens(text):
        out.add(stem(token))
        if "-" in token:
            out.update(stem(part) for part in token.split("-") if len(part) > 1)
    return frozenset(out)


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# --- the workspace, as the parser searches it --------------------------------------------
@dataclass
class _Entry:
    table: str
    item: Item
    label: str
    stems: frozenset[str]


class Index:
    """The request's items by table, with their label words for matching."""

    def __init__(self, context: Mapping[str, Any], created: Mapping[str, list[Item]]) -> None:
        self.tables: dict[str, list[Item]] = {}
        for table in lx.LABEL:
            rows = list(context.get(table) or [])
            seen = {r.get("id") for r in rows}
            rows += [r for r in created.get(table, []) if r.get("id") not in seen]
            self.tables[table] = rows
        self.created = {t: list(rows) for t, rows in created.items()}
        self.entries: dict[str, list[_Entry]] = {
            table: [
                _Entry(table, row, str(row.get(lx.LABEL[table]) or ""), frozenset())
                for row in rows
                if str(row.get(lx.LABEL[table]) or "").strip()
            ]
            for table, rows in self.tables.items()
        }
        frequency: dict[str, int] = {}
        for entries in self.entries.values():
            for entry in entries:
                entry.stems = _stems(entry.label)
                for s in entry.stems:
                    frequency[s] = frequency.get(s, 0) + 1
        self.weight = {s: 1.0 / n for s, n in frequency.items()}
        self.vocabulary = sorted(frequency)

    def by_label(self, label: str, tables: Iterable[str]) -> _Entry | None:
        wanted = label.strip().lower()
        for table in tables:
            for entry in self.entries.get(table, []):
                if entry.label.lower() == wanted:
                    return entry
        return None

    def mentions(self, text: str, tables: Iterable[str]) -> list[tuple[int, _Entry]]:
        """Items whose whole label `text` contains, with where it starts."""
        lowered = text.lower()
        found = []
        for table in tables:
            for entry in self.entries.get(table, []):
                label = entry.label.lower()
                if len(label) >= 3:
                    at = lowered.find(label)
                    if at >= 0:
                        found.append((at, entry))
        return found

    def best(self, words: Sequence[str], tables: Iterable[str], text: str = "") -> _Entry | None:
        """The item the words name best: whole label first, then weighted word overlap."""
        tables = list(tables)
        if text:
            named = self.mentions(text, tables)
            if named:
                return max(named, key=lambda m: len(m[1].label))[1]
        wanted = set()
        for word in words:
            s = stem(word)
            if s in self.weight:
                wanted.add(s)
            elif len(s) >= 4:
                close = difflib.get_close_matches(s, self.vocabulary, n=1, cutoff=0.8)
                if close:
                    wanted.add(close[0])
        if not wanted:
            return None
        best: _Entry | None = None
        best_key = (0.0, 0.0)
        for table in tables:
            for entry in self.entries.get(table, []):
                matched = wanted & entry.stems
                if not matched:
                    continue
                key = (
                    sum(self.weight[s] for s in matched),
                    len(matched) / max(1, len(entry.stems)),
                )
                if key > best_key:
                    best, best_key = entry, key
        return best


# --- one request inside a message -----------------------------------------------------
@dataclass
class _Clause:
    text: str
    low: str = ""
    quoted: str | None = None
    quote_span: tuple[int, int] | None = None
    colon: int = -1
    nouns: list[tuple[int, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.low = self.text.lower()
        if match := _QUOTE.search(self.text):
            self.quoted = (match.group(1) or match.group(2)).strip()
            self.quote_span = match.span()
        colon = self.text.find(":")
        if self.quote_span and self.quote_span[0] <= colon < self.quote_span[1]:
            colon = -1
        self.colon = colon
        for match in _TOKEN.finditer(self.text):
            word = match.group(0).lower()
            if self.quote_span and self.quote_span[0] <= match.start() < self.quote_span[1]:
                continue
            for part in {word, *word.split("-")[-1:]}:
                if part in lx.NOUN_TABLE:
                    self.nouns.append((match.start(), part, lx.NOUN_TABLE[part]))
                    break

    @property
    def head(self) -> str:
        return self.text[: self.colon] if self.colon >= 0 else self.text

    @property
    def body(self) -> str | None:
        if self.colon < 0:
            return None
        body = self.text[self.colon + 1 :].strip().strip('"').strip()
        return body or None

    def primary(self) -> str | None:
        """The kind of item the request is about: its first item noun, a comment first."""
        tables = [table for _, _, table in self.nouns]
        if "comments" in tables and (not self.colon >= 0 or self._noun_before_colon("comments")):
            return "comments"
        nouns = [n for n in self.nouns if not self._project_reference(n)]
        if not nouns:
            return None
        # A compound's last noun is its head: "the release notes task" is a task.
        first_at, first_word, first_table = nouns[0]
        following = re.match(r"\s+([\w-]+)", self.text[first_at + len(first_word) :])
        if following and following.group(1).lower() in lx.NOUN_TABLE:
            return lx.NOUN_TABLE[following.group(1).lower()]
        return first_table

    def _project_reference(self, noun: tuple[int, str, str]) -> bool:
        """'… on the website project': a project named as where an item goes, not the item."""
        at, _, table = noun
        return table == "projects" and bool(
            re.search(
                r"\b(?:on|to|in|into|for|under|from|für|zu|zum|zur|im|ins)\s+"
                r"(?:the\s+|my\s+|das\s+|dem\s+|den\s+)?(?:[\w'-]+\s+){1,3}$",
                self.text[:at],
                re.I,
            )
        )

    def _noun_before_colon(self, table: str) -> bool:
        return any(at < self.colon for at, _, t in self.nouns if t == table)


def split_clauses(text: str) -> list[str]:
    """The requests in a message: sentences, '… and then …', '… and <verb> …'."""
    colon = text.find(":")
    head, tail = (text, "") if colon < 0 else (text[:colon], text[colon:])
    verbs = lx.SPLIT_VERBS
    pattern = re.compile(
        r"(?<=[^\W\d])[.!?]\s+(?=\S)|(?<=\d)[.!?]\s+(?!(?:januar|februar|märz|april|mai|juni|"
        r"juli|august|september|oktober|november|dezember)\b)(?=(?-i:[A-ZÄÖÜ]))|\s*;\s*|,?\s+(?:and\s+)?then\s+|,?\s+und\s+dann\s+|"
        rf"(?:,\s*|\s+)(?:and|und)\s+(?:also\s+|auch\s+|noch\s+|please\s+|bitte\s+)?"
        rf"(?=(?:{verbs})\b)|,\s+(?=(?:{verbs})\b)|"
        r"\s+(?=(?:with|mit)\s+(?:the\s+|den\s+)?(?:tasks|todos|aufgaben)\b)",
        re.I,
    )
    parts = pattern.split(head)
    if tail:
        sentences = re.split(r"(?<=[^\W\d]{2})[.!?]\s+(?=[A-ZÄÖÜ])", tail)
        parts[-1] += sentences[0]
        parts += sentences[1:]
    cleaned = []
    for part in parts:
        part = re.sub(
            r"^(?:also|and|und|auch|oh|btw|ps|with|mit)\b[\s,]*", "", part.strip(), flags=re.I
        )
        part = part.strip(" ,.!")
        if part:
            cleaned.append(part)
    return cleaned


# --- the parser -----------------------------------------------------------------------
class _Parser:
    def __init__(
        self,
        index: Index,
        today: dt.date,
        language: str,
        history: Sequence[tuple[str, str]],
    ) -> None:
        self.index = index
        self.today = today
        self.language = language
        self.history = history
        self.last: _Entry | None = None  # the item the previous request was about
        self.new_project: str | None = None  # a project an earlier request creates
        self.topics: list[str] = []

    # -- helpers ------------------------------------------------------------------------
    def _dates(self, text: str) -> list[Any]:
        return find_dates(text, self.today)

    def _residual(self, text: str, *, drop_dates: bool = True) -> list[str]:
        if drop_dates:
            for match in reversed(self._dates(text)):
                text = text[: match.start] + " " + text[match.end :]
        return [t for t in tokens(text) if t not in lx.GRAMMAR and not t.isdigit()]

    def _from_history(self, tables: Sequence[str]) -> _Entry | None:
        for _, content in reversed(self.history):
            text = normalise(content)
            found: list[tuple[int, _Entry]] = []
            for match in _QUOTE.finditer(text):
                entry = self.index.by_label(match.group(1) or match.group(2), tables)
                if entry:
                    found.append((match.start(), entry))
            found += self.index.mentions(text, tables)
            if found:
                return min(found, key=lambda m: m[0])[1]
        return None

    def _refer(self, clause: _Clause, tables: Sequence[str], *, definite: bool) -> _Entry | None:
        """The item a pronoun (or 'the milestone') means: the conversation decides."""
        words = set(tokens(clause.low))
        pronoun = bool(words & lx.PRONOUNS)
        if not (pronoun or definite):
            return None
        if pronoun and self.last is not None and self.last.table in tables:
            return self.last
        if found := self._from_history(tables):
            return found
        for table in tables:
            if self.index.created.get(table):
                return self.index.by_label(
                    str(self.index.created[table][-1].get(lx.LABEL[table], "")), [table]
                )
        if "checkpoints" in tables and definite and not pronoun:
            pending = [
                e
                for e in self.index.entries["checkpoints"]
                if e.item.get("status", "pending") == "pending"
            ]
            if pending:
                return min(pending, key=lambda e: str(e.item.get("due_date") or "9999"))
        if pronoun:
            # The workspace's most recent item: clients add new records at the end.
            for table in tables:
                if self.index.entries.get(table):
                    return self.index.entries[table][-1]
        return None

    def _target(self, clause: _Clause, text: str, tables: Sequence[str]) -> _Entry | None:
        if clause.quoted and (entry := self.index.by_label(clause.quoted, tables)):
            return entry
        residual = self._residual(text)
        entry = self.index.best(residual, tables, text)
        if entry is None and not residual:
            definite = any(t in tables for _, _, t in clause.nouns)
            entry = self._refer(clause, tables, definite=definite)
        return entry

    def _targets(self, clause: _Clause, text: str, tables: Sequence[str]) -> list[_Entry]:
        """One item, or several named in a row ("tick off X and Y")."""
        whole = self._target(clause, text, tables)
        if whole is None or (clause.quoted and whole.label.lower() == clause.quoted.lower()):
            return [whole] if whole else []
        parts = [p for p in re.split(r"\s*,\s*|\s+(?:and|und|&)\s+", text) if p.strip()]
        if len(parts) < 2:
            return [whole]
        found: list[_Entry] = []
        for part in parts:
            entry = self.index.best(self._residual(part), tables, part)
            if entry is None:
                continue
            if entry in found:
                return [whole]
            found.append(entry)
        return found if len(found) >= 2 else [whole]

    def _project_ref(self, text: str, *, weak: bool = True) -> tuple[Item | None, str]:
        """A project the text names, and the text without that phrase."""
        lowered = text.lower()
        prep = r"(?:(?:for|to|in|on|into|under|of|from|für|zu|zum|zur|in|im|ins|der|des|vom)\s+)?"
        article = r"(?:(?:the|my|die|das|den|dem|der|mein|meinem)\s+)?"
        noun = r"(?:\s+(?:project|projekt))?"
        candidates: list[tuple[int, Item, re.Match[str]]] = []
        for entry in self.index.entries["projects"]:
            name = entry.label.lower()
            pattern = rf"\b{prep}{article}(?:(?:project|projekt)\s+)?{re.escape(name)}{noun}\b"
            if match := re.search(pattern, lowered):
                candidates.append((len(name) + 100, entry.item, match))
                continue
            for word in sorted(tokens(name), key=len, reverse=True):
                if word in lx.GRAMMAR or len(word) < 4 or word.isdigit():
                    continue
                w = re.escape(word)
                strong = re.search(
                    rf"\b{prep}{article}(?:{w}\w*\s+(?:project|projekt)|(?:project|projekt)\s+{w}\w*)\b",
                    lowered,
                )
                if strong:
                    candidates.append((len(word) + 50, entry.item, strong))
                    break
                if weak and (
                    loose := re.search(
                        rf"\b(?:for|to|in|on|für|zu|zum|zur|der|des)\s+{article}{w}\w*\b", lowered
                    )
                ):
                    candidates.append((len(word), entry.item, loose))
                    break
        if not candidates:
            return None, text
        _, project, match = max(candidates, key=lambda c: c[0])
        return project, text[: match.start()] + " " + text[match.end() :]

    def _priority(self, text: str, current: str | None = None) -> str | None:
        for value, pattern in lx.PRIORITY_PHRASES:
            for match in pattern.finditer(text):
                # "high priority" yes; "the high street" no: a bare "high"/"low" needs
                # a priority word, a verb of change or the end of a phrase near it.
                word = match.group(0).lower()
                if word in ("high", "low", "hoch") and not (
                    lx.PRIORITY_WORD.search(text)
                    or re.search(rf"\b{word}\b\s*(?:[,.!?]|$)", text.lower())
                ):
                    continue
                return value
        if current in lx.STEPS and lx.PRIORITY_DOWN.search(text):
            return lx.STEPS[max(0, lx.STEPS.index(current) - 1)]
        if current in lx.STEPS and lx.PRIORITY_UP.search(text):
            return lx.STEPS[min(2, lx.STEPS.index(current) + 1)]
        return None

    def _date(self, text: str) -> str | None:
        dates = self._dates(text)
        return dates[0].date.isoformat() if dates else None

    def _strip_dates(self, text: str) -> str:
        for match in reversed(self._dates(text)):
            text = text[: match.start] + " " + text[match.end :]
        return text

    def _strip_priority(self, text: str) -> str:
        for _, pattern in lx.PRIORITY_PHRASES:
            text = pattern.sub(" ", text)
        return re.sub(r"\b(?:priority|prio|priorität)\b", " ", text, flags=re.I)

    def _title(self, text: str) -> str:
        """An item's title from the words left once the request's own words are gone."""
        text = re.sub(r"\s+", " ", text).strip()
        words = text.split(" ")
        start = 0
        for i, word in enumerate(words):
            bare = word.lower().strip(",:;.!?")
            if bare in lx.LEAD_WORDS or not bare:
                start = i + 1
                if bare in lx.LEAD_STOP:
                    break
                continue
            break
        text = " ".join(words[start:])
        text = re.split(r"\s*[,;]\s*|\s+-\s+", text.strip(" ,;:-"), maxsplit=1)[0]
        for _ in range(3):
            text = lx.FILLER_END.sub("", text).strip(" ,;:.!?-")
        text = re.sub(r"\s+(?:due|fällig|until|by|bis|on|am|for|für)$", "", text, flags=re.I)
        text = lx.ARTICLE.sub("", text.strip(" ,;:.!?-\"'"))
        if self.language == "de":
            text = _german_infinitive(text)
        return capitalise(text.strip())[:200]

    # -- one request ----------------------------------------------------------------------
    def clause(self, raw: str) -> list[Intent]:
        clause = _Clause(raw)
        intents = self._clause(clause)
        if intents:
            self.topics += [i.agent for i in intents]
        elif table := self._topic(clause):
            self.topics.append(lx.TABLE_AGENT[table])
        return intents

    def _topic(self, clause: _Clause) -> str | None:
        """The kind of item a request is about when no call could be made for it."""
        if primary := clause.primary():
            return primary
        if lx.NOTE_CUE.search(clause.text):
            return "notes"
        if lx.MISSED_CUE.search(clause.text) or lx.CHECKPOINT_CUE.search(clause.text):
            return "checkpoints"
        text = clause.text
        changes = (
            lx.CREATE_CUE.search(text)
            or lx.DELETE_CUE.search(text)
            or lx.READ_CUE.search(text)
            or _task_status(text)
            or self._priority(text, "medium")
            or self._dates(text)
            or re.search(
                r"\b(?:move|push|postpone|reschedule|rename|verschieb\w*|schieb\w*)\b", text, re.I
            )
        )
        return "tasks" if changes else None

    def _clause(self, clause: _Clause) -> list[Intent]:
        primary = clause.primary()
        if primary is None and lx.NOTE_CUE.search(clause.text):
            primary = "notes"
        if primary == "comments":
            return self._comment(clause)
        if primary in ("notes", None) and (intents := self._note_append(clause)):
            return intents
        if lx.CREATE_CUE.search(clause.text) or (
            primary == "tasks" and clause.low.startswith(tuple(lx.PLURAL_TASKS))
        ):
            return self._create(clause, primary or "tasks")
        if lx.READ_CUE.search(clause.text):
            return self._read(clause, primary)
        return self._change(clause, primary)

    # -- reading ----------------------------------------------------------------------------
    def _read(self, clause: _Clause, primary: str | None) -> list[Intent]:
        text = clause.text
        table = primary
        project, rest = self._project_ref(text)
        if table is None:
            target = self.index.best(self._residual(rest), _SEARCHED, rest)
            table = target.table if target and target.table != "projects" else "tasks"
            if target and target.table == "projects":
                project = project or target.item
            if table == "tasks" and lx.MISSED_CUE.search(text):
                table = "checkpoints"
        if table == "projects":
            target = self._target(clause, text, ["projects"])
            if re.search(r"\b(?:all|archived|every|alle|archiviert\w*|including)\b", text, re.I):
                return [Intent("project_agent", "list_all_projects", {})]
            if target and (lx.GET_PROJECT_CUE.search(text) or self._residual(text)):
                return [Intent("project_agent", "get_project", {"project_id": target.item["id"]})]
            return [Intent("project_agent", "list_projects", {})]
        if table == "notes":
            target = self.index.best(self._residual(rest), ["notes"], rest)
            if target:
                self.last = target
                return [Intent("note_agent", "get_note", {"note_id": target.item["id"]})]
            args = {"project_id": project["id"]} if project else {}
            return [Intent("note_agent", "list_notes", args)]
        if table == "checkpoints":
            args = {"project_id": project["id"]} if project else {}
            if lx.MISSED_CUE.search(text):
                args["status"] = "missed"
            elif re.search(r"\b(?:reached|erreicht\w*)\b", text, re.I):
                args["status"] = "reached"
            return [Intent("checkpoint_agent", "list_checkpoints", args)]
        if lx.DUE_TODAY_CUE.search(text):
            return [Intent("task_agent", "list_tasks_due_today", {"include_overdue": True})]
        args: dict[str, Any] = {}
        if priority := self._priority(text):
            args["priority"] = priority
        if lx.TODO_CUE.search(text) or lx.LIST_OPEN_CUE.search(text):
            args["status"] = "todo"
        elif lx.PROGRESS_CUE.search(text):
            args["status"] = "in_progress"
        elif lx.DONE_CUE.search(text):
            args["status"] = "done"
        if project:
            args["project_id"] = project["id"]
        return [Intent("task_agent", "list_tasks", args)]

    # -- creating ---------------------------------------------------------------------------
    def _create(self, clause: _Clause, table: str) -> list[Intent]:
        if table == "projects":
            return self._create_project(clause)
        if table == "checkpoints":
            return self._create_checkpoint(clause)
        if table == "notes":
            return self._create_note(clause)
        return self._create_tasks(clause)

    def _after_noun(self, clause: _Clause, table: str, text: str) -> str:
        nouns = "|".join(map(re.escape, lx.NOUNS[table]))
        match = re.search(rf"\b(?:{nouns})\b", text, re.I)
        return text[match.end() :] if match else text

    def _create_project(self, clause: _Clause) -> list[Intent]:
        source = clause.text
        description = _DESCRIPTION.search(source)
        if description:
            source = source[: description.start()]
        colon = source.find(":") if clause.quoted is None else -1
        text = source[colon + 1 :] if colon >= 0 else self._after_noun(clause, "projects", source)
        text = re.sub(
            r"^\s*(?:called|named|titled|for|about|namens|mit dem namen|für)\s+",
            "",
            text,
            flags=re.I,
        )
        text = re.sub(r"\s+(?:an|anlegen|erstellen|starten|please|bitte)\s*$", "", text, flags=re.I)
        name = capitalise(lx.ARTICLE.sub("", text.strip(" ,.:;!?\"'")))
        if clause.quoted:
            name = clause.quoted
        if not name:
            return []
        self.new_project = name
        args: dict[str, Any] = {"name": name[:200]}
        if description and description.group(1).strip():
            args["description"] = description.group(1).strip()
        return [Intent("project_agent", "create_project", args)]

    def _project_for_new(self, clause: _Clause, text: str) -> tuple[Any, str]:
        project, rest = self._project_ref(text)
        if project is not None:
            return project["id"], rest
        if self.new_project is not None:
            rest = re.sub(
                r"\b(?:to|for|in|zu|dazu|für)\s+(?:it|es|ihm|that)\b", " ", rest, flags=re.I
            )
            return _NEW + self.new_project, rest
        return None, rest

    def _create_checkpoint(self, clause: _Clause) -> list[Intent]:
        project_id, text = self._project_for_new(clause, clause.text)
        due = self._date(text)
        text = self._strip_dates(text)
        if clause.quoted:
            title = clause.quoted
        else:
            colon = text.find(":")
            part = (
                text[colon + 1 :] if colon >= 0 else self._after_noun(clause, "checkpoints", text)
            )
            part = re.sub(r"^\s*(?:called|named|titled|namens)\s+", "", part, flags=re.I)
            title = self._title(part)
        if project_id is None:
            active = [
                p for p in self.index.tables["projects"] if p.get("status", "active") == "active"
            ]
            if len(active) == 1:
                project_id = active[0]["id"]
        if not title or project_id is None:
            return []
        args: dict[str, Any] = {"project_id": project_id, "title": title}
        if due:
            args["due_date"] = due
        return [Intent("checkpoint_agent", "create_checkpoint", args)]

    def _create_note(self, clause: _Clause) -> list[Intent]:
        project_id, head = self._project_for_new(clause, clause.head)
        body = clause.body or ""
        title = ""
        if clause.quoted:
            title = clause.quoted
        elif match := re.search(
            r"\b(?:about|on|called|named|titled|zum|zur|über|namens|zu)\s+(.+)$",
            self._after_noun(clause, "notes", head),
            re.I,
        ):
            title = capitalise(lx.ARTICLE.sub("", match.group(1).strip(" ,.:;!?\"'")))
        if not title and not clause.body:
            rest = self._after_noun(clause, "notes", head)
            if rest.strip():
                title = capitalise(lx.ARTICLE.sub("", rest.strip(" ,.:;!?\"'")))
        if not title:
            title = " ".join(body.split()[:6]).strip(" ,.;:!?")
            title = capitalise(title)
        if not title:
            return []
        args: dict[str, Any] = {"title": title[:200], "body": body}
        if project_id:
            args["project_id"] = project_id
        return [Intent("note_agent", "create_note", args)]

    def _create_tasks(self, clause: _Clause) -> list[Intent]:
        project_id, text = self._project_for_new(clause, clause.text)
        plural = any(word in lx.PLURAL_TASKS for _, word, _ in clause.nouns)
        listed = None
        if plural:
            listed = re.search(
                r"\b(?:tasks|todos|to-dos|aufgaben)\b(?:\s+hinzu)?\s*(?::|called|named|for|-)\s*(.+)$",
                text,
                re.I,
            )
        base: dict[str, Any] = {}
        if listed:
            outer = text[: listed.start(1)]
            if priority := self._priority(outer):
                base["priority"] = priority
            if due := self._date(outer):
                base["due_date"] = due
            parts = re.split(r"\s*[,;]\s*|\s+(?:and|und)\s+", listed.group(1))
            titles = []
            for part in parts:
                part = re.sub(r"\s+hinzu(?:fügen)?\s*$", "", part.strip(), flags=re.I)
                if part.strip(" .!?"):
                    titles.append(self._title(self._strip_dates(part)))
            if project_id:
                base["project_id"] = project_id
            return [
                Intent("task_agent", "create_task", {"title": t, **base}) for t in titles[:10] if t
            ]
        if clause.quoted:
            title = clause.quoted
            rest = text.replace(clause.text[clause.quote_span[0] : clause.quote_span[1]], " ")
        else:
            title, rest = "", text
        if priority := self._priority(rest):
            base["priority"] = priority
        if due := self._date(rest):
            base["due_date"] = due
            if re.search(r"\b(?:remind|erinnere?)\b", clause.text, re.I):
                base["remind"] = True
        if not title:
            body = rest
            if (colon := rest.find(":")) >= 0:
                body = rest[colon + 1 :]
            title = self._title(self._strip_priority(self._strip_dates(body)))
        if not title or title.lower() in lx.PRONOUNS:
            return []
        if project_id:
            base["project_id"] = project_id
        return [Intent("task_agent", "create_task", {"title": title, **base})]

    # -- comments and note bodies --------------------------------------------------------
    def _comment(self, clause: _Clause) -> list[Intent]:
        text = clause.text
        if lx.DELETE_CUE.search(text):
            entry = self.index.best(self._residual(text), ["comments"], "")
            if entry is None:
                return []
            return [Intent("task_agent", "delete_task_comment", {"comment_id": entry.item["id"]})]
        split = re.search(r"\s*(?::|\bsaying\b|\bthat says\b|\bwith the text\b)\s*", text, re.I)
        head = text[: split.start()] if split else text
        body = text[split.end() :].strip().strip('"') if split else ""
        task = self._target(clause, head, ["tasks"])
        if task is None:
            return []
        self.last = task
        if not body and (lx.READ_CUE.search(text) or re.search(r"\?\s*$", text)):
            return [Intent("task_agent", "list_task_comments", {"task_id": task.item["id"]})]
        if not body:
            return []
        return [
            Intent("task_agent", "add_task_comment", {"task_id": task.item["id"], "body": body})
        ]

    def _note_append(self, clause: _Clause) -> list[Intent]:
        if not re.search(r"\b(?:append|add to|hinzu\w*|ergänz\w*)\b", clause.text, re.I):
            return []
        if clause.body is None:
            return []
        note = self._target(clause, clause.head, ["notes"])
        if note is None:
            return []
        self.last = note
        return [
            Intent("note_agent", "update_note", {"note_id": note.item["id"], "append": clause.body})
        ]

    # -- changing and deleting -----------------------------------------------------------
    def _change(self, clause: _Clause, primary: str | None) -> list[Intent]:
        text = clause.text
        rename = None
        for pattern in lx.RENAME:
            if match := pattern.search(text):
                rename = match
                break
        about = rename.group("what") if rename else text
        tables = [primary] if primary else list(_SEARCHED)
        if primary is None and (
            lx.MISSED_CUE.search(text) or re.search(r"\b(?:reached|erreicht)\b", text, re.I)
        ):
            tables = ["checkpoints", *_SEARCHED]
        moving_project = None
        if primary in (None, "tasks") and re.search(r"\b(?:into|to|in|zu|zum|ins)\b", about, re.I):
            project, rest = self._project_ref(about, weak=False)
            if project is not None and re.search(
                r"\b(?:put|move|verschieb\w*|schieb\w*)\b", text, re.I
            ):
                moving_project, about = project, rest
        targets = self._targets(clause, about, tables)
        if (
            not targets
            and self._dates(text)
            and primary in (None, "tasks")
            and not lx.DELETE_CUE.search(text)
        ):
            # "in drei Tagen Auto waschen": something to do, on a day: a new task.
            return self._create_tasks(clause)
        intents: list[Intent] = []
        for target in targets:
            intents += self._change_one(clause, target, rename, moving_project)
        if targets:
            self.last = targets[-1]
        if intents:
            return intents
        changes = (
            lx.DELETE_CUE.search(text)
            or lx.ARCHIVE_CUE.search(text)
            or lx.RESTORE_CUE.search(text)
            or rename
            or re.search(r"\b(?:mark|set|make|move|push|change)\b", text, re.I)
        )
        if not changes and (primary is not None or text.rstrip().endswith("?")):
            # "notes for the website project", "low priority stuff?": a question.
            return self._read(clause, primary)
        return []

    def _change_one(
        self, clause: _Clause, target: _Entry, rename: re.Match[str] | None, project: Item | None
    ) -> list[Intent]:
        text = clause.text
        table, item = target.table, target.item
        key = {"tasks": "task_id", "projects": "project_id", "checkpoints": "checkpoint_id"}.get(
            table, "note_id"
        )
        agent = lx.TABLE_AGENT[table]
        if table == "projects":
            if lx.DELETE_CUE.search(text):
                permanent = bool(lx.PERMANENT_CUE.search(text))
                return [Intent(agent, "delete_project", {key: item["id"], "permanent": permanent})]
            if lx.ARCHIVE_CUE.search(text) or (
                lx.DONE_CUE.search(text) and not lx.RESTORE_CUE.search(text)
            ):
                return [Intent(agent, "delete_project", {key: item["id"], "permanent": False})]
            changes: dict[str, Any] = {}
            if lx.RESTORE_CUE.search(text):
                changes["status"] = "active"
            if rename:
                changes["name"] = _new_label(rename.group("new"))
            if not changes and (lx.GET_PROJECT_CUE.search(text) or text.rstrip().endswith("?")):
                return [Intent(agent, "get_project", {key: item["id"]})]
            return (
                [Intent(agent, "update_project", {key: item["id"], **changes})] if changes else []
            )
        if lx.DELETE_CUE.search(text):
            tool = {"tasks": "delete_task", "checkpoints": "delete_checkpoint"}.get(
                table, "delete_note"
            )
            return [Intent(agent, tool, {key: item["id"]})]
        changes = {}
        if rename:
            changes["title"] = _new_label(rename.group("new"))
        when = self._strip_priority(text)
        if shift := find_shift(when):
            base = item.get("due_date") or self.today.isoformat()
            # A due date past year 9999 (or none readable): the date stays as it is.
            with suppress(ValueError, OverflowError):
                changes["due_date"] = (
                    dt.date.fromisoformat(str(base)) + dt.timedelta(days=shift[0])
                ).isoformat()
        elif not rename and (due := self._date(when)):
            changes["due_date"] = due
        if table == "tasks":
            if status := _task_status(text):
                changes["status"] = status
            if priority := self._priority(text, item.get("priority")):
                changes["priority"] = priority
            if project is not None:
                changes["project_id"] = project["id"]
            tool = "update_task"
        elif table == "checkpoints":
            if lx.APPROVE_CUE.search(text):
                changes["approved"] = True
            if lx.MISSED_CUE.search(text):
                changes["status"] = "missed"
            elif lx.REACHED_CUE.search(text):
                changes["status"] = "reached"
            tool = "update_checkpoint"
        else:
            tool = "update_note"
            if not changes and not rename:
                if lx.READ_CUE.search(text) or re.search(
                    r"\b(?:open|read|show|zeig\w*)\b", text, re.I
                ):
                    return [Intent(agent, "get_note", {key: item["id"]})]
                return []
        if not changes:
            return []
        return [Intent(agent, tool, {key: item["id"], **changes})]


def _task_status(text: str) -> str | None:
    if lx.TODO_CUE.search(text):
        return "todo"
    if lx.DONE_CUE.search(text):
        return "done"
    if lx.PROGRESS_CUE.search(text):
        return "in_progress"
    return None


def _new_label(text: str) -> str:
    return text.strip().strip(" .!?\"'")[:200]


_SEPARABLE = re.compile(
    r"\b(an|auf|ab|aus|ein|mit|vor|zurück|nach|weg|zu|her|hin|los|fest|um|durch|zusammen)"
    r"zu([a-zäöüß]{3,}en)\b"
)


def _german_infinitive(text: str) -> str:
    """'Anna anzurufen' → 'Anna anrufen'; 'die Steuer zu machen' → 'die Steuer machen'."""
    text = _SEPARABLE.sub(r"\1\2", text)
    return re.sub(r"\bzu\s+([a-zäöüß]+en)$", r"\1", text)


def understand(
    message: str,
    *,
    today: dt.date,
    context: Mapping[str, Any] | None = None,
    history: Sequence[tuple[str, str]] = (),
    created: Mapping[str, list[Item]] | None = None,
) -> Understanding:
    """The tool calls `message` asks for, in order, with the message's language."""
    language = detect_language(message)
    index = Index(context or {}, created or {})
    parser = _Parser(index, today, language, history)
    intents: list[Intent] = []
    for part in split_clauses(normalise(message)):
        for intent in parser.clause(part):
            if intent not in intents:
                intents.append(intent)
    return Understanding(language, [_resolve_new(i, index) for i in intents], parser.topics)


def _resolve_new(intent: Intent, index: Index) -> Intent:
    """`@new:<name>`: the project an earlier agent created in this request, by name."""
    value = intent.args.get("project_id")
    if not (isinstance(value, str) and value.startswith(_NEW)):
        return intent
    name = value[len(_NEW) :].lower()
    created = index.created.get("projects", [])
    match = next((p for p in created if str(p.get("name", "")).lower() == name), None)
    match = match or (created[-1] if created else None)
    args = {k: v for k, v in intent.args.items() if k != "project_id"}
    if match is not None:
        args["project_id"] = match["id"]
    return Intent(intent.agent, intent.tool, args)
