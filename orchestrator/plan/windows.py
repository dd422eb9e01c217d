"""Maintenance windows: `Mon-Fri 22:00-06:00 Europe/Berlin`. Pure: the time is always given.

A window is a set of weekdays, a start and an end time of day, and an IANA time zone (UTC when
left out). It opens on each of its days at its start, local time, and closes at its end: the
same day, or the next one when the end is not after the start (`22:00-06:00`). Days are
`Mon`..`Sun`, ranges (`Mon-Fri`, `Fri-Mon` wraps) and lists (`Sat,Sun`), or `daily`. A wave
starts only while some window is open; one that started finishes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.errors import BadInput

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FORM = re.compile(
    r"^(?P<days>[A-Za-z,-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})(?:\s+(?P<zone>\S+))?$"
)
SEARCH_DAYS = 8  # a window opens at least once a week


@dataclass(frozen=True)
class Window:
    text: str
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time
    zone: ZoneInfo

    def spans(self, day: dt.date) -> tuple[float, float]:
        """When the window opening on `day` opens and closes, as Unix times."""
        opens = dt.datetime.combine(day, self.start, self.zone)
        end_day = day if self.end > self.start else day + dt.timedelta(days=1)
        closes = dt.datetime.combine(end_day, self.end, self.zone)
        return opens.timestamp(), closes.timestamp()


def parse_window(text: str) -> Window:
    match = _FORM.match(text.strip())
    if match is None:
        raise BadInput(
            f"--window {text!r}: write DAYS HH:MM-HH:MM [ZONE], e.g. 'Mon-Fri 22:00-06:00 "
            "Europe/Berlin'"
        )
    zone_name = match["zone"] or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"--window {text!r}: {zone_name!r} is not an IANA time zone") from None
    start, end = _time(text, match["start"]), _time(text, match["end"])
    if start == end:
        raise BadInput(f"--window {text!r}: it opens and closes at the same time")
    return Window(text, _days(text, match["days"]), start, end, zone)


def parse_windows(texts: Sequence[str]) -> list[Window]:
    return [parse_window(text) for text in texts]


def _time(text: str, value: str) -> dt.time:
    hours, minutes = (int(part) for part in value.split(":"))
    if hours == 24 and minutes == 0:
        return dt.time(23, 59, 59, 999999)  # the end of the day
    if hours > 23 or minutes > 59:
        raise BadInput(f"--window {text!r}: {value} is not a time of day")
    return dt.time(hours, minutes)


def _days(text: str, value: str) -> frozenset[int]:
    if value.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in value.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise BadInput(f"--window {text!r}: {part!r} is not a day (Mon..Sun) or a range")
        start, stop = DAYS.index(first), DAYS.index(last or first)
        days.update((start + offset) % 7 for offset in range((stop - start) % 7 + 1))
    return frozenset(days)


def _openings(window: Window, now: float) -> list[tuple[float, float]]:
    """The window's spans that have not closed by `now`, soonest first, over a week ahead."""
    today = dt.datetime.fromtimestamp(now, window.zone).date()
    spans = []
    for offset in range(-1, SEARCH_DAYS):
        day = today + dt.timedelta(days=offset)
        if day.weekday() in window.days:
            opens, closes = window.spans(day)
            if closes > now:
                spans.append((opens, closes))
    return spans


def is_open(windows: Sequence[Window], now: float) -> bool:
    """Whether a wave may start at `now`: no windows at all, or one of them is open."""
    if not windows:
        return True
    return any(opens <= now for window in windows for opens, _ in _openings(window, now))


def next_opening(windows: Sequence[Window], now: float) -> float:
    """When a wave may next start: `now` itself inside a window."""
    if is_open(windows, now):
        return now
    return min(opens for window in windows for opens, _ in _openings(window, now))


def next_openings(windows: Sequence[Window], now: float, count: int) -> list[tuple[float, str]]:
    """The next `count` times a window opens after `now` (and which window), for the reviewer."""
    found = [
        (opens, window.text)
        for window in windows
        for opens, _ in _openings(window, now)
        if opens > now
    ]
    return sorted(found)[:count]


def utc_text(when: float) -> str:
    return f"{dt.datetime.fromtimestamp(when, dt.UTC):%a %Y-%m-%d %H:%M} UTC"
