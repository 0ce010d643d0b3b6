"""Every text the server sends a model and a client must never see, for the sanitizer.

Read off the agent registry and the prompt module at start-up: the router and
synthesis prompts, the context headers, each agent's system prompt, its tools'
descriptions and definitions (as the model receives them, JSON), and the plan
templates. A new agent or tool is covered without being named here.
"""

from __future__ import annotations

import json

from app.chat.agents import registry
from app.chat.prompts import (
    AGENT_RESULTS_HEADER,
    CONTEXT_HEADER,
    PREVIOUS_RESULTS_HEADER,
    ROUTER_PROMPT,
    SYNTHESIS_PROMPT,
    TEMPLATES,
)


def server_texts() -> list[str]:
    texts = [
        ROUTER_PROMPT,
        SYNTHESIS_PROMPT,
        CONTEXT_HEADER,
        PREVIOUS_RESULTS_HEADER,
        AGENT_RESULTS_HEADER,
        *TEMPLATES.values(),
    ]
    for agent in registry.list_agents():
        texts.append(agent.system_prompt)
        for tool in agent.tools:
            texts.append(tool.description)
            texts.append(json.dumps(tool.openai_schema()))
    return texts
