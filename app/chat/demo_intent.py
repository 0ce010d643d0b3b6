"""Routing and dates for the offline `demo` model, over `app.chat.understanding`.

The router asks which agents a message needs; the answer comes from the same
understanding the agents' tool calls come from, so routing and acting agree:
"create project Garden with tasks: dig, plant" routes to the project agent, then
the task agent. An agent whose records the understanding has no grammar for is
routed by the nouns it declares.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence

from app.chat.understanding import lexicon, parse_date, understand

__all__ = ["AGENT_NOUNS", "DEFAULT_AGENT", "classify", "learn", "parse_date"]

DEFAULT_AGENT = "task_agent"
# Agent → the nouns that name its records (every table it declares), from `learn`.
AGENT_NOUNS: dict[str, tuple[str, ...]] = {}
# Noun → agent, for the agents whose tables the understanding does not parse.
_OWN_NOUNS: dict[str, str] = {}
_WORD = re.compile(r"[\w'-]+")

# Routing needs no dates resolved; a fixed day keeps it independent of the clock.
_ROUTING_DAY = dt.date(2000, 1, 3)


def learn(declared: Iterable[tuple[str, Mapping[str, Sequence[str]]]]) -> None:
    """Rebuild the routing tables, in place, from (agent, {table: nouns}) declarations."""
    declared = list(declared)
    lexicon.learn(declared)
    AGENT_NOUNS.clear()
    _OWN_NOUNS.clear()
    for agent, tables in declared:
        AGENT_NOUNS[agent] = tuple(w.lower() for words in tables.values() for w in words)
        for table, words in tables.items():
            if table not in lexicon.PARSED_TABLES:
                _OWN_NOUNS.update({w.lower(): agent for w in words})


def _named_by_own_nouns(message: str) -> list[str]:
    named: list[str] = []
    for word in _WORD.findall(message.lower()):
        agent = _OWN_NOUNS.get(word)
        if agent is not None and agent not in named:
            named.append(agent)
    return named


def classify(message: str) -> list[str]:
    """Agents the message asks for, in order; at least one (task_agent by default)."""
    own = _named_by_own_nouns(message) if _OWN_NOUNS else []
    understood = understand(message, today=_ROUTING_DAY).agents
    if own:
        # The understanding reads any other request as a task: keep only the agents
        # whose records the message names too.
        named = set(lexicon.NOUN_TABLE).intersection(_WORD.findall(message.lower()))
        tables = {lexicon.NOUN_TABLE[n] for n in named}
        return [a for a in understood if any(lexicon.TABLE_AGENT.get(t) == a for t in tables)] + own
    return understood or [DEFAULT_AGENT]
