"""The one duration grammar: 500ms, 30s, 5m, 1h30m, 1d, 4w3d, bare seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobworker import errors
from jobworker.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1d", 86400),
        ("4w3d2h1m", 4 * 604800 + 3 * 86400 + 2 * 3600 + 60),
        ("1.5h", 5400),
        ("2", 2),
        ("0.25", 0.25),
        (" 1h 30m ", 5400),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_numbers_and_timedeltas_pass_through() -> None:
    assert parse_duration(3) == timedelta(seconds=3)
    assert parse_duration(0.5) == timedelta(milliseconds=500)
    assert parse_duration(timedelta(minutes=2)) == timedelta(minutes=2)


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "1x", "h1", "1h-5m", "ms", "--1s"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=r"^sweep_threshold: .* is not a duration; use a number"):
        parse_duration(text, field="sweep_threshold")


@pytest.mark.parametrize("value", [-1, -0.5, timedelta(seconds=-1)])
def test_negative_durations_are_refused(value: float | timedelta) -> None:
    with pytest.raises(errors.ConfigurationError, match=r"^recovery_delay: .* must not be negative"):
        parse_duration(value, field="recovery_delay")


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2, seconds=5), "2d5s"),
    ],
)
def test_format_duration_round_trips(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta
