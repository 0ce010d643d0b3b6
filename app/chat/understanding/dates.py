"""Relative and calendar dates in English and German, resolved against a given day.

A small grammar over a fixed vocabulary: "tomorrow", "übermorgen", "next Monday",
"nächsten Freitag", "in three days", "in zwei Wochen", "end of the month", "Ende
des Monats", "this weekend", "March 31", "4. April", "the 20th", ISO dates. The
reference day is always passed in, never read from the clock, so the same message
gives the same date on every run.

"next <weekday>" is that weekday in the following calendar week (on a Wednesday,
"next Monday" and "next Friday" are both next week's); a bare weekday ("Friday",
"on Friday", "bis Freitag") is its next occurrence after today.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache

WEEKDAYS = {
    "monday": 0, "mon": 0, "montag": 0,
    "tuesday": 1, "tue": 1, "tues": 1, "dienstag": 1,
    "wednesday": 2, "wed": 2, "mittwoch": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "donnerstag": 3,
    "friday": 4, "fri": 4, "freitag": 4,
    "saturday": 5, "sat": 5, "samstag": 5, "sonnabend": 5,
    "sunday": 6, "sun": 6, "sonntag": 6,
}  # fmt: skip
_SHORT_DAYS = {"mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun"}
MONTHS = {
    "january": 1, "jan": 1, "januar": 1, "jänner": 1,
    "february": 2, "feb": 2, "februar": 2,
    "march": 3, "mar": 3, "märz": 3, "maerz": 3,
    "april": 4, "apr": 4,
    "may": 5, "mai": 5,
    "june": 6, "jun": 6, "juni": 6,
    "july": 7, "jul": 7, "juli": 7,
    "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "oktober": 10, "okt": 10,
    "november": 11, "nov": 11,
    "december": 12, "dec": 12, "dezember": 12, "dez": 12,
}  # fmt: skip
NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30, "couple of": 2, "few": 3,
    "ein": 1, "eine": 1, "einen": 1, "einem": 1, "einer": 1, "zwei": 2, "drei": 3,
    "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7, "acht": 8, "neun": 9, "zehn": 10,
    "elf": 11, "zwölf": 12, "vierzehn": 14, "zwanzig": 20, "dreißig": 30,
}  # fmt: skip
UNITS = {
    "day": 1, "days": 1, "tag": 1, "tage": 1, "tagen": 1,
    "week": 7, "weeks": 7, "woche": 7, "wochen": 7,
    "month": 30, "months": 30, "monat": 30, "monate": 30, "monaten": 30,
}  # fmt: skip

_PREP = (
    r"(?:(?:due|by|on|for|until|till|til|before|at|to|from|bis|am|zum|ab|auf|für|"
    r"spätestens|vor)\s+)*"
)
_NUM = r"(\d{1,3}|" + "|".join(sorted(map(re.escape, NUMBERS), key=len, reverse=True)) + r")"
_UNIT = r"(" + "|".join(sorted(UNITS, key=len, reverse=True)) + r")"
_DAY = r"(" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")"
_MONTH = r"(" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")"
_NEXT = r"(?:next|nächste[nmrs]?|naechste[nmrs]?|kommende[nmrs]?|following)"
_THIS = r"(?:this|coming|diese[nmrs]?)"
_ORD = r"(\d{1,2})(?:st|nd|rd|th|\.)?"

# Each rule: a pattern (matched on lower-case text) and how to turn it into a date.
_RULES: list[tuple[str, str]] = [
    (r"(\d{4})-(\d{2})-(\d{2})", "iso"),
    (r"(\d{1,2})\.(\d{1,2})\.(\d{2,4})?", "dotted"),
    (r"(?:the\s+)?day after tomorrow|übermorgen|uebermorgen", "plus2"),
    (r"end of\s+next\s+week|ende\s+(?:der\s+)?nächsten\s+woche|ende\s+nächster\s+woche", "eonw"),
    (r"end of\s+(?:the\s+|this\s+)?week|ende\s+(?:der|dieser)\s+woche|wochenende\s+hin", "eow"),
    (r"end of\s+next\s+month|ende\s+(?:des\s+)?nächsten\s+monats", "eonm"),
    (r"end of\s+(?:the\s+|this\s+)?month|ende\s+(?:des|dieses)\s+monats|monatsende", "eom"),
    (rf"{_NEXT}\s+woche\s+{_DAY}", "nwday"),
    (r"next\s+week|nächste\s+woche|kommende\s+woche", "nw"),
    (r"next\s+month|nächsten\s+monat|kommenden\s+monat", "nm"),
    (r"(?:this|the|on the|over the)\s+weekend|(?:am|dieses|übers)\s+wochenende", "weekend"),
    (rf"in\s+{_NUM}\s+{_UNIT}|{_NUM}\s+{_UNIT}\s+from\s+now", "in"),
    (r"in\s+a\s+couple\s+of\s+days", "couple"),
    (rf"{_NEXT}\s+{_DAY}", "nday"),
    (rf"(?:{_THIS}\s+)?{_DAY}", "day"),
    (rf"{_MONTH}\s+{_ORD}(?!\d)", "md"),
    (rf"{_ORD}\s+(?:of\s+)?{_MONTH}", "dm"),
    (r"(?:the\s+)(\d{1,2})(?:st|nd|rd|th)|(?<=am\s)(\d{1,2})\.(?!\d)", "nth"),
    (r"today|tonight|this evening|heute(?:\s+abend)?", "today"),
    (r"tomorrow|tmrw|tmr|tomorow|tommorow|tommorrow|(?<!heute\s)(?<!guten\s)morgen", "plus1"),
]
_COMPILED = [
    (re.compile(rf"(?<![\w-])(?:{pattern})(?![\w-])", re.I), kind) for pattern, kind in _RULES
]
# Words a date phrase leads in with ("due", "by", "bis"…): part of the phrase, so a
# title loses them with the date.
_LEAD_IN = re.compile(rf"(?<![\w-]){_PREP}$", re.I)
# Most messages name no date: one quick look for any word a date phrase needs.
_ANY_DATE = re.compile(
    r"\d|"
    + "|".join(
        rf"\b{w}"
        for w in (
            "tod",
            "ton",
            "tom",
            "tmr",
            "morgen",
            "übermorgen",
            "uebermorgen",
            "heute",
            "this evening",
            "end",
            "next",
            "nächst",
            "naechst",
            "kommend",
            "following",
            "week",
            "woche",
            "month",
            "monat",
            "in ",
            *WEEKDAYS,
            *MONTHS,
            "the day after",
        )
    ),
    re.I,
)
_SHIFT = re.compile(
    rf"\b(?:back\s+(?:by\s+)?|by\s+|um\s+){_NUM}\s+{_UNIT}\b|"
    rf"\b{_NUM}\s+{_UNIT}\s+(?:later|back|nach hinten)\b",
    re.I,
)


@dataclass(frozen=True)
class DateMatch:
    date: dt.date
    start: int
    end: int


def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _month_end(day: dt.date) -> dt.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _upcoming(today: dt.date, month: int, day: int, year: int | None = None) -> dt.date:
    if year is not None:
        return dt.date(year if year > 99 else 2000 + year, month, day)
    candidate = dt.date(today.year, month, day)
    return candidate if candidate >= today else dt.date(today.year + 1, month, day)


def _number(word: str) -> int:
    return int(word) if word.isdigit() else NUMBERS[word]


def _resolve(kind: str, groups: tuple[str | None, ...], today: dt.date) -> dt.date | None:
    g = [x for x in groups if x is not None]
    monday = today - dt.timedelta(days=today.weekday())
    if kind == "iso":
        return dt.date(int(g[0]), int(g[1]), int(g[2]))
    if kind == "dotted":
        return _upcoming(today, int(g[1]), int(g[0]), int(g[2]) if len(g) > 2 else None)
    if kind == "today":
        return today
    if kind == "plus1":
        return today + dt.timedelta(days=1)
    if kind == "plus2":
        return today + dt.timedelta(days=2)
    if kind == "eow":
        friday = monday + dt.timedelta(days=4)
        return friday if friday >= today else friday + dt.timedelta(days=7)
    if kind == "eonw":
        return monday + dt.timedelta(days=11)
    if kind == "eom":
        return _month_end(today)
    if kind == "eonm":
        return _month_end(_add_months(today.replace(day=1), 1))
    if kind == "nw":
        return monday + dt.timedelta(days=7)
    if kind == "nwday":
        return monday + dt.timedelta(days=7 + WEEKDAYS[g[0].lower()])
    if kind == "nm":
        return _add_months(today.replace(day=1), 1)
    if kind == "weekend":
        return today if today.weekday() >= 5 else monday + dt.timedelta(days=5)
    if kind == "in":
        n, unit = _number(g[0].lower()), g[1].lower()
        if UNITS[unit] == 30:
            return _add_months(today, n)
        return today + dt.timedelta(days=n * UNITS[unit])
    if kind == "couple":
        return today + dt.timedelta(days=2)
    if kind == "nday":
        return monday + dt.timedelta(days=7 + WEEKDAYS[g[0].lower()])
    if kind == "day":
        ahead = (WEEKDAYS[g[0].lower()] - today.weekday()) % 7 or 7
        return today + dt.timedelta(days=ahead)
    if kind == "md":
        return _upcoming(today, MONTHS[g[0].lower()], int(g[1]))
    if kind == "dm":
        return _upcoming(today, MONTHS[g[1].lower()], int(g[0]))
    if kind == "nth":
        day = int(g[0])
        candidate = today.replace(day=1)
        for _ in range(3):
            if day <= calendar.monthrange(candidate.year, candidate.month)[1]:
                found = candidate.replace(day=day)
                if found >= today:
                    return found
            candidate = _add_months(candidate, 1)
        return None
    return None


def find_dates(text: str, today: dt.date) -> list[DateMatch]:
    """Every date phrase in `text`, left to right, none overlapping another."""
    return list(_find_dates(text, today))


@lru_cache(maxsize=4096)
def _find_dates(text: str, today: dt.date) -> tuple[DateMatch, ...]:
    if not _ANY_DATE.search(text):
        return ()
    found: list[DateMatch] = []
    taken: list[tuple[int, int]] = []
    for pattern, kind in _COMPILED:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < b and a < end for a, b in taken):
                continue
            if kind == "day" and not _weekday_is_meant(match):
                continue
            try:
                date = _resolve(kind, match.groups(), today)
            except (ValueError, OverflowError, KeyError):
                # An impossible or out-of-range date is no date, not a wrong one.
                continue
            if date is None:
                continue
            lead = _LEAD_IN.search(text, 0, start)
            if lead is not None and not any(lead.start() < b and a < start for a, b in taken):
                start = lead.start()
            found.append(DateMatch(date, start, end))
            taken.append((start, end))
    return tuple(sorted(found, key=lambda m: m.start))


def _weekday_is_meant(match: re.Match[str]) -> bool:
    """'sun' or 'wed' alone are words; as a day they follow a preposition."""
    word = match.group(match.lastindex or 0).lower() if match.lastindex else ""
    if word not in _SHORT_DAYS:
        return True
    return match.group(0).lower() != word


def find_date(text: str, today: dt.date) -> DateMatch | None:
    dates = find_dates(text, today)
    return dates[0] if dates else None


def parse_date(text: str, today: dt.date) -> dt.date | None:
    """The first date `text` names, resolved against `today`; None when there is none."""
    match = find_date(text, today)
    return match.date if match else None


def find_shift(text: str) -> tuple[int, int, int] | None:
    """A move by a span ("back a week", "um zwei Tage"): (days, start, end), or None."""
    match = _SHIFT.search(text)
    if not match:
        return None
    g = [x for x in match.groups() if x is not None]
    n, unit = _number(g[0].lower()), g[1].lower()
    return n * UNITS[unit], match.start(), match.end()
