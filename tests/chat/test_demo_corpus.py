"""The offline demo model on the labelled corpus: at least 95 % of the messages right."""

from __future__ import annotations

from tests.chat.evaluate import CORPUS, HELD_OUT, evaluate, load, render

GATE = 0.95


async def test_the_corpus_is_understood_at_95_percent() -> None:
    report = await evaluate(CORPUS)
    assert len(report.outcomes) >= 150
    assert report.accuracy >= GATE, render(report, verbose=True)


def test_the_corpus_is_two_thirds_english_one_third_german() -> None:
    cases = load(CORPUS)
    german = sum(1 for c in cases if c.get("lang") == "de")
    assert 0.25 <= german / len(cases) <= 0.4
    assert len(load(HELD_OUT)) >= 20


async def test_german_messages_get_german_answers() -> None:
    report = await evaluate(CORPUS)
    for outcome in report.outcomes:
        if outcome.case.get("lang") == "de" and outcome.ok and outcome.calls:
            assert not outcome.response.startswith(("Created", "Updated", "Deleted")), outcome
            assert any(
                word in outcome.response
                for word in ("Aufgabe", "Projekt", "Meilenstein", "Notiz", "Kommentar")
            ), outcome.response
