"""Routing and dates for the offline `demo` model, over `app.chat.understanding`.

The router asks which agents a message needs; the answer comes from the same
understanding the agents' tool calls come from, so routing and acting agree:
"create project Garden with tasks: dig, plant" routes to the project agent, then
the task agent.
"""

from __future__ import annotations

import datetime as dt

from app.chat.understanding import parse_date, understand
from app.chat.understanding.lexicon import NOUNS, TABLE_AGENT

__all__ = ["AGENT_NOUNS", "DEFAULT_AGENT", "classify", "parse_date"]

DEFAULT_AGENT = "task_agent"
AGENT_NOUNS: dict[str, tuple[str, ...]] = {}
for _table, _nouns in NOUNS.items():
    AGENT_NOUNS[TABLE_AGENT[_table]] = AGENT_NOUNS.get(TABLE_AGENT[_table], ()) + _nouns

# Routing needs no dates resolved; a fixed day keeps it independent of the clock.
_ROUTING_DAY = dt.date(2000, 1, 3)


def classify(message: str) -> list[str]:
    """Agents the message asks for, in order; at least one (task_agent by default)."""
    return understand(message, today=_ROUTING_DAY).agents or [DEFAULT_AGENT]
