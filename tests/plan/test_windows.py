"""Maintenance windows: parsing, when one is open, when the next opens (zoneinfo, across
midnight and DST), refused input. Pure: the time is always given."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from orchestrator.errors import BadInput
from orchestrator.plan.windows import (
    is_open,
    next_opening,
    next_openings,
    parse_window,
    parse_windows,
    utc_text,
)

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTS = parse_windows(["Mon-Fri 22:00-06:00 Europe/Berlin"])


def at(text: str, zone: ZoneInfo = BERLIN) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        ("2026-12-07 21:59", False),  # a Monday, before the window
        ("2026-12-07 22:00", True),
        ("2026-12-08 05:59", True),  # Tuesday morning: Monday night's window
        ("2026-12-08 06:00", False),
        ("2026-12-12 05:00", True),  # Saturday morning: still Friday night's
        ("2026-12-12 23:00", False),  # Saturday night: none
        ("2026-12-14 01:00", False),  # Monday 01:00: Sunday had no window
    ],
)
def test_a_window_across_midnight_belongs_to_the_day_it_opens(when: str, inside: bool) -> None:
    assert is_open(NIGHTS, at(when)) is inside


def test_the_next_opening_skips_the_weekend_and_follows_the_zone() -> None:
    saturday = at("2026-12-12 12:00")
    assert next_opening(NIGHTS, saturday) == at("2026-12-14 22:00")
    assert utc_text(at("2026-12-14 22:00")) == "Mon 2026-12-14 21:00 UTC"  # CET is UTC+1
    inside = at("2026-12-08 01:00")
    assert next_opening(NIGHTS, inside) == inside
    summer = parse_windows(["Sat 02:00-04:00 Europe/Berlin"])
    assert utc_text(next_opening(summer, at("2026-07-01 00:00"))) == "Sat 2026-07-04 00:00 UTC"


def test_several_windows_any_one_is_enough_and_openings_are_listed_in_order() -> None:
    windows = parse_windows(["Sat,Sun 10:00-12:00 UTC", "Wed 23:00-24:00 America/New_York"])
    monday = at("2026-12-07 12:00", ZoneInfo("UTC"))
    assert [(utc_text(when), text) for when, text in next_openings(windows, monday, 3)] == [
        ("Thu 2026-12-10 04:00 UTC", "Wed 23:00-24:00 America/New_York"),
        ("Sat 2026-12-12 10:00 UTC", "Sat,Sun 10:00-12:00 UTC"),
        ("Sun 2026-12-13 10:00 UTC", "Sat,Sun 10:00-12:00 UTC"),
    ]
    assert is_open(windows, at("2026-12-13 11:59", ZoneInfo("UTC")))
    assert is_open([], monday)  # no windows: always


def test_day_ranges_wrap_and_daily_means_every_day() -> None:
    assert parse_window("Fri-Mon 01:00-02:00").days == frozenset({4, 5, 6, 0})
    assert parse_window("daily 01:00-02:00 UTC").days == frozenset(range(7))
    assert parse_window("mon,wed 01:00-02:00").zone == ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("weekdays 22:00-06:00", "'weekdays' is not a day"),
        ("Mon-Fri 22:00-06:00 Mars/Olympus", "'Mars/Olympus' is not an IANA time zone"),
        ("Mon-Fri 25:00-06:00", "25:00 is not a time of day"),
        ("Mon 10:00-10:00", "opens and closes at the same time"),
        ("Mon-Fri 22:00", "write DAYS HH:MM-HH:MM [ZONE]"),
        ("Mon 01:00-02:00 ../../etc/passwd", "is not an IANA time zone"),
    ],
)
def test_a_bad_window_is_refused_naming_it(text: str, why: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_window(text)
    assert str(caught.value).startswith(f"--window {text!r}: ") and why in str(caught.value)
