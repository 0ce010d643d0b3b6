"""The offline model's answer text, in the language of the user's message.

English answers are the tools' own summaries. German ones are written here from the
tool's name and its result data, so a German message gets a German answer.
"""

from __future__ import annotations

import re
from typing import Any

_STATUS_DE = {
    "todo": "offen",
    "in_progress": "in Arbeit",
    "done": "erledigt",
    "active": "aktiv",
    "archived": "archiviert",
    "pending": "ausstehend",
    "reached": "erreicht",
    "missed": "verpasst",
}
_PRIORITY_DE = {"high": "hoch", "medium": "mittel", "low": "niedrig"}
_QUOTED = re.compile(r"“([^”]*)”")


def _q(text: Any) -> str:
    return f"„{text}“"


def _task_de(task: dict[str, Any]) -> str:
    extras = [
        _STATUS_DE.get(task.get("status", "todo"), str(task.get("status"))),
        f"Priorität {_PRIORITY_DE.get(task.get('priority', 'medium'), task.get('priority'))}",
    ]
    if task.get("due_date"):
        extras.append(f"fällig {task['due_date']}")
    return f"{_q(task.get('title', ''))} ({', '.join(extras)})"


def _checkpoint_de(cp: dict[str, Any]) -> str:
    extras = [_STATUS_DE.get(cp.get("status", "pending"), str(cp.get("status")))]
    if cp.get("due_date"):
        extras.append(f"fällig {cp['due_date']}")
    return f"{_q(cp.get('title', ''))} ({', '.join(extras)})"


def _project_de(project: dict[str, Any]) -> str:
    return f"{_q(project.get('name', ''))} ({_STATUS_DE.get(project.get('status', 'active'))})"


def _listing(items: list[dict[str, Any]], describe, limit: int = 10) -> str:
    listed = "; ".join(describe(i) for i in items[:limit])
    more = f" und {len(items) - limit} weitere" if len(items) > limit else ""
    return f"{listed}{more}"


def _named(summary: str) -> str:
    match = _QUOTED.search(summary)
    return match.group(1) if match else ""


def german(tool: str, payload: dict[str, Any]) -> str:
    """A German sentence for one tool result (`{"ok", "summary", "data"}`)."""
    data = payload.get("data")
    summary = str(payload.get("summary", ""))
    if not payload.get("ok", True):
        return f"Das ging nicht: {summary}"
    rows = data if isinstance(data, list) else []
    record = data if isinstance(data, dict) else {}
    if tool == "list_tasks":
        if not rows:
            return "Keine passenden Aufgaben."
        return f"{len(rows)} Aufgabe(n): {_listing(rows, _task_de)}."
    if tool == "list_tasks_due_today":
        if not rows:
            return "Heute ist nichts fällig."
        return f"{len(rows)} Aufgabe(n) bis heute fällig: {_listing(rows, _task_de)}."
    if tool == "create_task":
        return f"Aufgabe {_task_de(record)} angelegt."
    if tool == "update_task":
        return f"Aufgabe {_task_de(record)} aktualisiert."
    if tool == "delete_task":
        return f"Aufgabe {_q(_named(summary))} gelöscht."
    if tool == "list_task_comments":
        if not rows:
            return f"Zu {_q(_named(summary))} gibt es keine Kommentare."
        return f"{len(rows)} Kommentar(e): {_listing(rows, lambda c: _q(c.get('body', '')))}."
    if tool == "add_task_comment":
        return f"Kommentar zu {_q(_named(summary))} hinzugefügt."
    if tool == "delete_task_comment":
        return "Kommentar gelöscht."
    if tool in ("list_projects", "list_all_projects"):
        if not rows:
            return "Keine Projekte."
        return f"{len(rows)} Projekt(e): {_listing(rows, _project_de, 20)}."
    if tool == "get_project":
        return (
            f"Projekt {_q(record.get('name', ''))} ist "
            f"{_STATUS_DE.get(record.get('status', 'active'))}: {record.get('task_count', 0)} "
            f"Aufgabe(n), davon {record.get('open_tasks', 0)} offen, und "
            f"{record.get('checkpoint_count', 0)} Meilenstein(e)."
        )
    if tool == "create_project":
        return f"Projekt {_q(record.get('name', ''))} angelegt."
    if tool == "update_project":
        return f"Projekt {_q(record.get('name', ''))} aktualisiert."
    if tool == "delete_project":
        if record.get("status") == "archived":
            return (
                f"Projekt {_q(record.get('name', ''))} archiviert (es lässt sich wiederherstellen)."
            )
        return f"Projekt {_q(_named(summary))} endgültig gelöscht."
    if tool == "list_checkpoints":
        if not rows:
            return "Keine passenden Meilensteine."
        return f"{len(rows)} Meilenstein(e): {_listing(rows, _checkpoint_de, 20)}."
    if tool == "create_checkpoint":
        return f"Meilenstein {_checkpoint_de(record)} angelegt."
    if tool == "update_checkpoint":
        return f"Meilenstein {_checkpoint_de(record)} aktualisiert."
    if tool == "delete_checkpoint":
        return f"Meilenstein {_q(_named(summary))} gelöscht."
    if tool == "list_notes":
        if not rows:
            return "Keine passenden Notizen."
        return f"{len(rows)} Notiz(en): {_listing(rows, lambda n: _q(n.get('title', '')), 20)}."
    if tool == "get_note":
        body = str(record.get("body", ""))
        preview = body if len(body) <= 280 else body[:277] + "…"
        return f"Notiz {_q(record.get('title', ''))}: {preview}"
    if tool == "create_note":
        return f"Notiz {_q(record.get('title', ''))} angelegt."
    if tool == "update_note":
        return f"Notiz {_q(record.get('title', ''))} aktualisiert."
    if tool == "delete_note":
        return f"Notiz {_q(_named(summary))} gelöscht."
    return summary


_NOUN = {
    "en": {"tasks": "task", "projects": "project", "checkpoints": "checkpoint", "notes": "note"},
    "de": {
        "tasks": "diese Aufgabe",
        "projects": "dieses Projekt",
        "checkpoints": "diesen Meilenstein",
        "notes": "diese Notiz",
    },
}
_ASK = {
    "en": {
        "tasks": "Which task should I add? Give me its title, for example "
        "“add a task to call Anna tomorrow”.",
        "projects": "Which project do you mean? Name it, for example "
        "“archive the Website project”.",
        "checkpoints": "Which project should the checkpoint belong to, and what is it called?",
        "notes": "Which note do you mean? Give me its title.",
        None: "Could you say a little more about what to do?",
    },
    "de": {
        "tasks": "Welche Aufgabe soll ich anlegen? Nenn mir ihren Titel, zum Beispiel "
        "„Aufgabe: Anna morgen anrufen“.",
        "projects": "Welches Projekt meinst du? Nenn es beim Namen, zum Beispiel "
        "„Archiviere das Projekt Website“.",
        "checkpoints": "Zu welchem Projekt gehört der Meilenstein, und wie heißt er?",
        "notes": "Welche Notiz meinst du? Nenn mir ihren Titel.",
        None: "Kannst du genauer sagen, was ich tun soll?",
    },
}


def clarify(table: str | None, language: str, *, names_an_item: bool) -> str:
    """What to ask when no tool call fits: which item, or what to create."""
    lang = language if language in _ASK else "en"
    if table is not None and names_an_item:
        noun = _NOUN[lang][table]
        if lang == "de":
            return (
                f"Ich konnte {noun} in deinem Arbeitsbereich nicht finden. "
                "Nenn den Namen so, wie er in deiner Liste steht."
            )
        return (
            f"I could not find that {noun} in your workspace. "
            f"Name the {noun} as it appears in your list."
        )
    return _ASK[lang][table]


def greeting(language: str) -> str:
    if language == "de":
        return "Ich helfe dir mit deinen Aufgaben, Projekten, Meilensteinen und Notizen."
    return "I can help with your tasks, projects, checkpoints and notes."


def done(language: str) -> str:
    return "Erledigt." if language == "de" else "Done."
