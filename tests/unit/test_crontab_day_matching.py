"""Day-of-month and day-of-week combine exactly as in graphile-worker's cronMatcher.ts (issue 11, item 5):
ORed only when both restrict, where "restrict" means the expanded field lacks some value (so ``1-31`` and
``0-6`` count as ``*``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobworker.crontab import ScheduleEntry, ticks_between


def expand(field: str, low: int, high: int, *, wrap: bool = False) -> set[int]:
    """graphile's parseCrontabRange for the syntax these tests use: numbers, a-b ranges, * and */n, lists."""
    out: set[int] = set()
    for part in field.split(","):
        if part.startswith("*"):
            step = int(part[2:]) if part.startswith("*/") else 1
            out |= set(range(low, high + 1, step))
        elif "-" in part:
            a, b = (int(x) for x in part.split("-"))
            out |= set(range(a, b + 1))
        else:
            out.add(int(part))
    return {low if wrap and n == high + 1 else n for n in out}


def graphile_days(dom: str, dow: str, start: datetime, days: int) -> list[datetime]:
    dates, dows = expand(dom, 1, 31), expand(dow, 0, 6, wrap=True)
    date_excl, dow_excl = len(dates) != 31, len(dows) != 7
    out = []
    for i in range(days):
        day = start + timedelta(days=i)
        weekday = (day.weekday() + 1) % 7  # Sunday is 0
        if date_excl and dow_excl:
            hit = day.day in dates or weekday in dows
        elif date_excl:
            hit = day.day in dates
        elif dow_excl:
            hit = weekday in dows
        else:
            hit = True
        if hit:
            out.append(day)
    return out


@pytest.mark.parametrize(
    ("dom", "dow"),
    [
        ("1", "1"),  # both restrict: the 1st or any Monday
        ("1-31", "1"),  # every date listed: Mondays only (croniter alone: every day)
        ("1", "0-6"),  # every weekday listed: the 1st only (croniter alone: every day)
        ("1", "0-7"),
        ("*/2", "1"),
        ("1,15", "1-5"),
        ("*", "1"),
        ("13", "*"),
        ("*", "*"),
        ("*/1", "5"),
    ],
)
def test_days_match_graphile_worker(dom: str, dow: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entry = ScheduleEntry(id="x", task="t", cron=f"0 0 {dom} * {dow}")
    ours = ticks_between(entry, start - timedelta(minutes=1), start + timedelta(days=400))
    assert ours == graphile_days(dom, dow, start, 401)
