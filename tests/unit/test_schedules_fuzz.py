"""Property tests of the schedules file parser (issue 11, fuzzing): whatever a file holds, loading it gives
entries or one ConfigurationError naming the problem, never another exception."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobworker import crontab, errors

FIELDS = [
    "id",
    "task",
    "cron",
    "timezone",
    "payload",
    "queue",
    "priority",
    "max_attempts",
    "maxAttempts",
    "job_key",
    "jobKey",
    "job_key_mode",
    "backfill",
    "max",
    "tz",
    "bogus",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
cron_field = st.text(alphabet="0123456789*/,-LW#?abcdefghijklmnopqrstuvwxyzJANFEBMONSUN ", min_size=1, max_size=8)
crons = st.one_of(
    st.lists(cron_field, min_size=1, max_size=7).map(" ".join),
    st.sampled_from(["* * * * *", "0 0 31 2 *", "0 0 30 2 1", "*/0 * * * *", "0 0 1-31 * 0-7", "60 * * * *"]),
)
timezones = st.one_of(
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Mars/Base", "", "../../etc/passwd", "UTC\x00"]),
    st.text(max_size=20),
)
values: dict[str, Any] = {
    "id": st.one_of(st.text(max_size=10), scalars),
    "task": st.one_of(st.text(max_size=140), scalars),
    "cron": st.one_of(crons, scalars),
    "timezone": st.one_of(timezones, scalars),
    "tz": timezones,
    "payload": json_like,
    "queue": st.one_of(st.text(max_size=140), scalars),
    "priority": st.one_of(st.integers(min_value=-40000, max_value=40000), scalars),
    "max_attempts": st.one_of(st.integers(min_value=-5, max_value=40000), scalars),
    "maxAttempts": st.integers(min_value=-5, max_value=40000),
    "job_key": st.one_of(st.text(max_size=600), scalars),
    "jobKey": st.text(max_size=20),
    "job_key_mode": st.one_of(st.sampled_from(["replace", "preserve_run_at", "unsafe_dedupe", "x"]), scalars),
    "backfill": st.one_of(st.sampled_from(["1h", "0s", "5x", "1e9d", "999999999999d"]), scalars),
    "max": st.one_of(st.integers(min_value=-3, max_value=10**12), scalars),
    "bogus": scalars,
}
entries = st.fixed_dictionaries(
    {"id": st.text(string.ascii_letters, min_size=1, max_size=8), "task": st.just("t"), "cron": crons},
    optional={k: values[k] for k in FIELDS if k not in ("id", "task", "cron")},
)
documents = st.one_of(
    st.lists(entries, max_size=3),
    st.fixed_dictionaries({}, optional={"schedules": st.lists(entries, max_size=2), "crontab": st.text(max_size=80)}),
    json_like,
)
crontab_lines = st.lists(
    st.tuples(crons, st.text(string.ascii_letters + "_:-./", min_size=1, max_size=10), st.text(max_size=30)).map(
        lambda parts: f"{parts[0]} {parts[1]} {parts[2]}"
    ),
    max_size=3,
).map("\n".join)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(found: list[crontab.ScheduleEntry]) -> None:
    """Loaded entries are usable: the scheduler computes their ticks without an unexpected exception."""
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    for entry in found:
        crontab.ticks_between(entry, now, now + timedelta(hours=2))


@FUZZ
@given(documents)
@example({0: None})  # found by this test: non-string YAML keys raised TypeError
@example({"\n": None})  # ... and a key with a newline broke the one-line error
@example([{"id": "a", "task": "t", "cron": "* * * * *", "backfill": 86400000000000.0}])  # OverflowError
@example([{"id": "a", "task": "t", "cron": "* * * * *", "backfill": float("nan")}])
def test_a_parsed_document_gives_entries_or_a_configuration_error(data: Any) -> None:
    try:
        found = crontab.parse_schedules(data, where="schedules.yaml")
    except errors.ConfigurationError as exc:
        assert str(exc).startswith("schedules.yaml") and "\n" not in str(exc).strip()
        return
    check(found)


@FUZZ
@given(st.one_of(crontab_lines, st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_file_text_gives_entries_or_a_configuration_error(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schedules.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            found = crontab.load_schedules_file(path)
        except errors.ConfigurationError:
            return
    check(found)
