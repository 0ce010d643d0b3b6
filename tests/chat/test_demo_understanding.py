"""The offline model's understanding: dates, language, titles, pronouns, pipelines."""

from __future__ import annotations

import datetime as dt

import pytest

from app.chat.agents import registry
from app.chat.demo_intent import classify
from app.chat.demo_model import DemoChatModel
from app.chat.llm import ModelCaller
from app.chat.orchestrator import Orchestrator
from app.chat.plans import PlanService
from app.chat.schemas import ChatContext, ChatRequest, ChatResponse, HistoryMessage
from app.chat.understanding import detect_language, parse_date, understand
from tests.chat.test_orchestrator import TIERS

WEDNESDAY = dt.date(2026, 3, 11)


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("tomorrow", "2026-03-12"),
        ("the day after tomorrow", "2026-03-13"),
        ("übermorgen", "2026-03-13"),
        ("friday", "2026-03-13"),
        ("on Wednesday", "2026-03-18"),  # a weekday is its next occurrence, never today
        ("next Monday", "2026-03-16"),
        ("next friday", "2026-03-20"),  # next week's Friday
        ("nächsten Freitag", "2026-03-20"),
        ("nächste Woche Dienstag", "2026-03-17"),
        ("next week", "2026-03-16"),
        ("in three days", "2026-03-14"),
        ("in 10 days", "2026-03-21"),
        ("in zwei Wochen", "2026-03-25"),
        ("in a month", "2026-04-11"),
        ("end of the week", "2026-03-13"),
        ("Ende der Woche", "2026-03-13"),
        ("end of next week", "2026-03-20"),
        ("end of the month", "2026-03-31"),
        ("Ende des Monats", "2026-03-31"),
        ("Monatsende", "2026-03-31"),
        ("end of next month", "2026-04-30"),
        ("next month", "2026-04-01"),
        ("this weekend", "2026-03-14"),
        ("by the 20th", "2026-03-20"),
        ("the 5th", "2026-04-05"),  # already past this month
        ("March 31", "2026-03-31"),
        ("Jan 5", "2027-01-05"),  # past this year: next year's
        ("4. April", "2026-04-04"),
        ("15.04.", "2026-04-15"),
        ("2026-04-15", "2026-04-15"),
        ("tmrw", "2026-03-12"),
    ],
)
def test_relative_dates_resolve_against_the_given_day(phrase: str, expected: str) -> None:
    assert parse_date(f"call Anna {phrase}", WEDNESDAY) == dt.date.fromisoformat(expected)


@pytest.mark.parametrize(
    "text",
    ["call Anna", "guten Morgen", "the sun is out", "wed like that", "2026-02-30", "31.02."],
)
def test_words_that_are_no_dates(text: str) -> None:
    assert parse_date(text, dt.date(2026, 4, 1)) is None


def test_the_nth_is_the_next_month_that_has_one() -> None:
    assert parse_date("by the 31st", dt.date(2026, 4, 1)) == dt.date(2026, 5, 31)


def test_dates_at_the_end_of_the_calendar_are_none_rather_than_wrong() -> None:
    assert parse_date("in 999 weeks", dt.date(9999, 1, 1)) is None
    assert parse_date("end of next month", dt.date(9999, 12, 1)) is None


@pytest.mark.parametrize(
    ("message", "language"),
    [
        ("tick it off", "en"),
        ("mark it as done", "en"),
        ("erledigt", "de"),
        ("Milch kaufen ist erledigt", "de"),
        ("Mach 'Call the printer' wieder auf", "de"),
        ("Lösch die Notiz Gift ideas for Dad", "de"),
        ("danke!", "de"),
        ("add a task to buy Brötchen", "en"),
    ],
)
def test_language_per_message(message: str, language: str) -> None:
    assert detect_language(message) == language


CONTEXT = {
    "today": WEDNESDAY.isoformat(),
    "tasks": [
        {"id": "t_keys", "title": "Get Anna's keys", "priority": "medium", "status": "todo"},
        {"id": "t_movers", "title": "Book the movers", "priority": "high", "status": "todo"},
    ],
    "projects": [{"id": "p_web", "name": "Website relaunch", "status": "active"}],
}


def _calls(message: str, history=(), context=CONTEXT):
    found = understand(message, today=WEDNESDAY, context=context, history=history)
    return [(i.tool, i.args) for i in found.intents]


def test_apostrophes_are_not_quotes() -> None:
    assert _calls("add a task to get Anna's keys from Bob's place") == [
        ("create_task", {"title": "Get Anna's keys from Bob's place"})
    ]
    assert _calls("don't forget Tom's cake") == [("create_task", {"title": "Tom's cake"})]
    assert _calls("mark 'Get Anna's keys' as done") == [
        ("update_task", {"task_id": "t_keys", "status": "done"})
    ]


def test_a_pronoun_means_the_item_the_conversation_was_about() -> None:
    history = [
        ("user", "add a task to book the movers"),
        ("assistant", "Created task “Book the movers” (todo, high priority)."),
    ]
    assert _calls("tick it off", history) == [
        ("update_task", {"task_id": "t_movers", "status": "done"})
    ]
    assert _calls("lower the priority", history) == []  # no pronoun, no item: ask
    assert _calls("lower its priority", history) == []  # "its" is no item either
    assert _calls("push it to Monday", history) == [
        ("update_task", {"task_id": "t_movers", "due_date": "2026-03-16"})
    ]


def test_without_a_conversation_it_is_the_workspace_s_newest_item() -> None:
    assert _calls("mark it as done") == [("update_task", {"task_id": "t_movers", "status": "done"})]


def test_priority_moves_one_step_from_where_it_is() -> None:
    assert _calls("lower the priority of the movers") == [
        ("update_task", {"task_id": "t_movers", "priority": "medium"})
    ]
    assert _calls("bump up Anna's keys") == [
        ("update_task", {"task_id": "t_keys", "priority": "high"})
    ]


def test_a_message_with_two_requests_routes_to_two_agents_in_order() -> None:
    message = (
        "create project Summer trip and add three tasks: book hotel, rent a car, buy sunscreen"
    )
    assert classify(message) == ["project_agent", "task_agent"]
    assert classify("Add a milestone Beta to the website relaunch. Also remind me to call Jo.") == [
        "checkpoint_agent",
        "task_agent",
    ]
    assert classify("hello there") == ["task_agent"]


async def test_the_pipeline_links_new_tasks_to_the_new_project() -> None:
    demo = ModelCaller(DemoChatModel(), None)
    orchestrator = Orchestrator(
        llm=demo, router=demo, registry=registry, tiers=TIERS, tier="pro", plans=PlanService()
    )
    result = await orchestrator.orchestrate(
        ChatRequest(
            message="Leg ein Projekt Gartenhaus an und füge drei Aufgaben hinzu: "
            "Fundament gießen, Holz bestellen, Dach decken",
            context=ChatContext.model_validate(CONTEXT),
        )
    )
    assert isinstance(result, ChatResponse)
    project, *tasks = result.actions
    assert project.data["name"] == "Gartenhaus"
    assert [t.data["title"] for t in tasks] == ["Fundament gießen", "Holz bestellen", "Dach decken"]
    assert {t.data["project_id"] for t in tasks} == {project.id}
    assert "Projekt „Gartenhaus“ angelegt" in result.response


async def test_mark_it_as_done_right_after_creating_a_task() -> None:
    demo = ModelCaller(DemoChatModel(), None)
    orchestrator = Orchestrator(
        llm=demo, router=demo, registry=registry, tiers=TIERS, tier="pro", plans=PlanService()
    )
    first = await orchestrator.orchestrate(
        ChatRequest(
            message="add a task to call the plumber", context=ChatContext.model_validate(CONTEXT)
        )
    )
    created = first.actions[0]
    # The client applies the action and sends its workspace with the next message.
    context = {**CONTEXT, "tasks": [*CONTEXT["tasks"], {"id": created.id, **created.data}]}
    second = await orchestrator.orchestrate(
        ChatRequest(
            message="mark it as done",
            context=ChatContext.model_validate(context),
            history=[
                HistoryMessage(role="user", content="add a task to call the plumber"),
                HistoryMessage(role="assistant", content=first.response),
            ],
        )
    )
    assert [(a.type, a.id, a.data) for a in second.actions] == [
        ("update_record", created.id, {"status": "done"})
    ]


async def test_a_german_request_that_finds_nothing_is_asked_back_in_german() -> None:
    demo = ModelCaller(DemoChatModel(), None)
    orchestrator = Orchestrator(
        llm=demo, router=demo, registry=registry, tiers=TIERS, tier="pro", plans=PlanService()
    )
    result = await orchestrator.orchestrate(
        ChatRequest(
            message="lösch die Aufgabe Zahnarzt", context=ChatContext.model_validate(CONTEXT)
        )
    )
    assert result.actions == []
    assert "nicht finden" in result.response
