"""Evaluate the offline demo model on the labelled chat corpus.

    python -m tests.chat.evaluate [--verbose] [corpus.yaml …]

Each message goes through the real chat path on the demo model (router, agents,
pipeline, tools): the tool calls the model makes are compared with the labels.
Prints accuracy per agent, per tool, per language and overall, the language
detection's accuracy, and the mean time the model spends understanding a message
(and the whole request's). The held-out file is reported on its own line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.billing.tiers import TierTable
from app.chat.agents import registry
from app.chat.demo_model import DemoChatModel
from app.chat.llm import ModelCaller
from app.chat.orchestrator import Orchestrator
from app.chat.plans import PlanService
from app.chat.schemas import ChatContext, ChatRequest, ChatResponse, HistoryMessage
from app.chat.understanding import detect_language, understand
from app.config import Settings
from app.models import BillingTier

CORPUS_DIR = Path(__file__).parent / "corpus"
CORPUS = CORPUS_DIR / "corpus.yaml"
HELD_OUT = CORPUS_DIR / "held_out.yaml"
WORKSPACE = CORPUS_DIR / "workspace.yaml"
# Compared only when the label names them: free text and flags the user rarely states.
_OPTIONAL = {"body", "append", "remind", "query", "description", "include_overdue"}
TODAY = dt.date(2026, 3, 11)
_ARTICLE = re.compile(r"^(?:a|an|the|der|die|das|den|dem|ein|eine|einen)\s+")


class _TimedDemoModel(DemoChatModel):
    """The demo model, recording its tool calls and the time it spends thinking."""

    calls: list[tuple[str, dict[str, Any]]] = []
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def respond(self, messages, tools):
        started, cpu = time.perf_counter(), time.thread_time()
        reply = super().respond(messages, tools)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.thread_time() - cpu
        self.calls.extend((c["name"], c["args"]) for c in reply.tool_calls)
        return reply


@dataclass
class Outcome:
    case: dict[str, Any]
    calls: list[tuple[str, str, dict[str, Any]]]
    response: str
    ok: bool
    language_ok: bool
    model_seconds: float
    model_cpu_seconds: float
    request_seconds: float
    understanding_cpu_seconds: float


@dataclass
class Report:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(o.ok for o in self.outcomes) / max(1, len(self.outcomes))

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def load(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _norm(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = re.sub(r"\s+", " ", value.strip().strip(" .,!?;:\"'“”„").casefold())
    return _ARTICLE.sub("", text)


def args_match(expected: dict[str, Any], actual: dict[str, Any], created: dict[str, str]) -> bool:
    for key in set(expected) | (set(actual) - _OPTIONAL):
        want, got = expected.get(key), actual.get(key)
        if key not in expected and key == "status" and got == "todo" and "task_id" not in actual:
            continue  # create_task's default, written out
        if key not in expected and key == "permanent" and got is False:
            continue
        if want == "*":
            if got in (None, ""):
                return False
            continue
        if isinstance(want, str) and want.startswith("@new:"):
            want = created.get(want[len("@new:") :])
        if _norm(want) != _norm(got):
            return False
    return True


def calls_match(case: dict[str, Any], calls, created: dict[str, str]) -> bool:
    expected = case.get("expect") or []
    if len(expected) != len(calls):
        return False
    return all(
        e["agent"] == agent and e["tool"] == tool and args_match(e.get("args") or {}, args, created)
        for e, (agent, tool, args) in zip(expected, calls, strict=True)
    )


def _context(workspace: dict[str, Any], extra: dict[str, Any] | None) -> ChatContext:
    merged = {k: list(v) if isinstance(v, list) else v for k, v in workspace.items()}
    for table, rows in (extra or {}).items():
        merged[table] = [*merged.get(table, []), *rows]
    return ChatContext.model_validate(merged)


_TIERS = TierTable(Settings(_env_file=None))
_TOOL_AGENT = {tool.name: agent.name for agent in registry.list_agents() for tool in agent.tools}


async def run_case(case: dict[str, Any], workspace: dict[str, Any]) -> Outcome:
    model = _TimedDemoModel()
    model.calls, model.seconds, model.cpu_seconds = [], 0.0, 0.0
    caller = ModelCaller(model, None)
    orchestrator = Orchestrator(
        llm=caller,
        router=caller,
        registry=registry,
        tiers=_TIERS,
        tier=BillingTier.TEAM,
        plans=PlanService(),
    )
    request = ChatRequest(
        message=case["message"],
        context=_context(workspace, case.get("context")),
        history=[HistoryMessage(role=r, content=c) for r, c in case.get("history") or []],
    )
    context = request.context.model_dump(mode="json") if request.context else {}
    cpu = time.thread_time()
    understand(
        case["message"],
        today=request.context.today if request.context and request.context.today else TODAY,
        context=context,
        history=[(h.role, h.content) for h in request.history],
    )
    understanding_cpu = time.thread_time() - cpu
    started = time.perf_counter()
    response = await orchestrator.orchestrate(request)
    elapsed = time.perf_counter() - started
    assert isinstance(response, ChatResponse)
    created = {
        a.table: a.id for a in response.actions if a.type == "create_record" and a.table and a.id
    }
    calls = [(_TOOL_AGENT.get(name, "?"), name, args) for name, args in model.calls]
    language = case.get("lang", "en")
    return Outcome(
        case=case,
        calls=calls,
        response=response.response,
        ok=calls_match(case, calls, created),
        language_ok=detect_language(case["message"]) == language,
        model_seconds=model.seconds,
        model_cpu_seconds=model.cpu_seconds,
        request_seconds=elapsed,
        understanding_cpu_seconds=understanding_cpu,
    )


async def evaluate(path: Path, workspace: dict[str, Any] | None = None) -> Report:
    workspace = workspace or load(WORKSPACE)
    report = Report(path.name)
    for case in load(path):
        report.outcomes.append(await run_case(case, workspace))
    return report


def _groups(report: Report, key) -> dict[str, list[bool]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for outcome in report.outcomes:
        labels = {key(e) for e in outcome.case.get("expect") or []} or {"(nothing to do)"}
        for label in sorted(labels):
            groups[label].append(outcome.ok)
    return groups


def _table(title: str, groups: dict[str, list[bool]]) -> list[str]:
    lines = [title]
    for label, oks in sorted(groups.items()):
        lines.append(
            f"  {label:<24} {sum(oks):>3}/{len(oks):<3} {100 * sum(oks) / len(oks):6.1f} %"
        )
    return lines


def render(report: Report, *, verbose: bool = False, detail: bool = True) -> str:
    n = len(report.outcomes)
    lines = [f"== {report.name}: {n} messages"]
    if detail:
        lines += _table("per agent:", _groups(report, lambda e: e["agent"]))
        lines += _table("per tool:", _groups(report, lambda e: e["tool"]))
        by_language: dict[str, list[bool]] = defaultdict(list)
        for o in report.outcomes:
            by_language[o.case.get("lang", "en")].append(o.ok)
        lines += _table("per language:", by_language)
        detected = sum(o.language_ok for o in report.outcomes)
        lines.append(f"language detected: {detected}/{n} ({100 * detected / max(1, n):.1f} %)")
        model_ms = 1000 * sum(o.model_seconds for o in report.outcomes) / max(1, n)
        cpu_ms = 1000 * sum(o.model_cpu_seconds for o in report.outcomes) / max(1, n)
        request_ms = 1000 * sum(o.request_seconds for o in report.outcomes) / max(1, n)
        parse_ms = 1000 * sum(o.understanding_cpu_seconds for o in report.outcomes) / max(1, n)
        lines.append(f"mean CPU time to understand a message (one parse): {parse_ms:.3f} ms")
        lines.append(
            f"mean time per message in the model (router, agents, answers): {model_ms:.3f} ms "
            f"wall, {cpu_ms:.3f} ms CPU; whole request through the orchestrator: "
            f"{request_ms:.3f} ms"
        )
    lines.append(
        f"OVERALL {report.name}: {sum(o.ok for o in report.outcomes)}/{n} "
        f"= {100 * report.accuracy:.1f} %"
    )
    if verbose:
        for o in report.failures():
            lines.append(f"  ✗ {o.case['message']!r}")
            lines.append(
                f"      expected {[(e['tool'], e.get('args')) for e in o.case.get('expect') or []]}"
            )
            lines.append(f"      got      {[(t, a) for _, t, a in o.calls]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    args = parser.parse_args(argv)
    if args.files:
        for path in args.files:
            print(render(asyncio.run(evaluate(path)), verbose=args.verbose))
        return 0
    corpus = asyncio.run(evaluate(CORPUS))
    print(render(corpus, verbose=args.verbose))
    held_out = asyncio.run(evaluate(HELD_OUT))
    print(render(held_out, verbose=args.verbose, detail=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
