"""The four agents; importing this package registers them."""

from app.chat.agents import checkpoint_agent, note_agent, project_agent, task_agent
from app.chat.agents.base import AgentResult, AgentTool, ChatAgent, ToolOutcome, Workspace
from app.chat.agents.registry import AgentRegistry, register, registry

__all__ = [
    "AgentRegistry",
    "AgentResult",
    "AgentTool",
    "ChatAgent",
    "ToolOutcome",
    "Workspace",
    "checkpoint_agent",
    "note_agent",
    "project_agent",
    "register",
    "registry",
    "task_agent",
]
