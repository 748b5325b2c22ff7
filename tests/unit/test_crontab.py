from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobworker import crontab, errors
from jobworker.crontab import ScheduleEntry, parse_crontab, parse_crontab_line, parse_entry, ticks_between
from jobworker.jobs import JobKeyMode
from jobworker.scheduler import collect_entries, cron_ts
from tests import shared_jobs


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def entry(cron: str, tz: str = "UTC") -> ScheduleEntry:
    return parse_entry({"task": "t", "cron": cron, "timezone": tz}, where="test")


# -- entries ----------------------------------------------------------------------------------------
def test_entry_defaults_and_all_fields() -> None:
    e = parse_entry(
        {
            "id": "nightly",
            "task": "report",
            "cron": "0  4 * * *",
            "timezone": "Europe/Berlin",
            "payload": {"a": 1},
            "queue": "reports",
            "priority": -1,
            "max_attempts": 3,
            "job_key": "report",
            "job_key_mode": "preserve_run_at",
            "backfill": "1h30m",
            "max": 2,
        },
        where="file entry 1",
    )
    assert (e.id, e.task, e.cron, e.timezone) == ("nightly", "report", "0 4 * * *", "Europe/Berlin")
    assert (e.queue, e.priority, e.max_attempts, e.job_key) == ("reports", -1, 3, "report")
    assert e.job_key_mode is JobKeyMode.PRESERVE_RUN_AT
    assert e.backfill == timedelta(hours=1, minutes=30)
    assert e.max == 2
    bare = parse_entry({"task": "report", "cron": "* * * * *"}, where="x")
    assert (bare.id, bare.timezone, bare.payload, bare.backfill, bare.max) == ("report", "UTC", {}, None, None)


def test_camel_case_keys_from_the_crd_are_accepted() -> None:
    e = parse_entry(
        {"task": "t", "cron": "* * * * *", "maxAttempts": 4, "jobKey": "k", "jobKeyMode": "unsafe_dedupe"}, where="x"
    )
    assert (e.max_attempts, e.job_key, e.job_key_mode) == (4, "k", JobKeyMode.UNSAFE_DEDUPE)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"id": "bad", "task": "t", "cron": "61 * * * *"}, "'bad'.*cron '61 \\* \\* \\* \\*' is not a valid"),
        ({"id": "six", "task": "t", "cron": "0 * * * * *"}, "'six'.*must have 5 fields"),
        (
            {"id": "tz", "task": "t", "cron": "* * * * *", "timezone": "Mars/Base"},
            "'tz'.*'Mars/Base' is not a known IANA",
        ),
        ({"id": "f", "task": "t", "cron": "* * * * *", "backfill": "soon"}, "'f'.*backfill: 'soon' is not a duration"),
        ({"id": "m", "task": "t", "cron": "* * * * *", "max": 0}, "'m'.*max: 0 must be an integer"),
        ({"id": "k", "task": "t", "cron": "* * * * *", "job_key_mode": "nope"}, "'k'.*job_key_mode"),
        ({"id": "p", "task": "t", "cron": "* * * * *", "payload": [1]}, "'p'.*payload: must be a mapping"),
        ({"id": "u", "task": "t", "cron": "* * * * *", "color": "red"}, "'u'.*unknown field\\(s\\) color"),
        ({"cron": "* * * * *"}, "task: required"),
    ],
)
def test_bad_entries_name_the_entry(raw: dict[str, object], message: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=f"^schedules.yaml entry 3.*{message}"):
        parse_entry(raw, where="schedules.yaml entry 3")


# -- graphile crontab syntax ----------------------------------------------------------------------
def test_crontab_line_with_every_option() -> None:
    e = parse_crontab_line(
        "*/5 1 * * 1-5 send_report ?id=rep&fill=4w3d2h1m&max=3&queue=q&jobKey=k&jobKeyMode=preserve_run_at&priority=1"
        ' {"to":"ops"}',
        where="crontab line 1",
    )
    assert (e.id, e.task, e.cron) == ("rep", "send_report", "*/5 1 * * 1-5")
    assert e.backfill == timedelta(weeks=4, days=3, hours=2, minutes=1)
    # graphile's ``max`` is max attempts
    assert (e.max_attempts, e.queue, e.job_key, e.priority) == (3, "q", "k", 1)
    assert e.job_key_mode is JobKeyMode.PRESERVE_RUN_AT
    assert e.payload == {"to": "ops"}


def test_crontab_text_skips_comments_and_defaults_id_to_task() -> None:
    entries = parse_crontab('# nightly\n\n0 4 * * * cleanup\n* * * * * ping {"x": 1}\n')
    assert [(e.id, e.task, dict(e.payload)) for e in entries] == [
        ("cleanup", "cleanup", {}),
        ("ping", "ping", {"x": 1}),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("* * * * task", "line 2.*is not a crontab line"),
        ("* * * * * task ?bogus=1", "line 2.*unknown option 'bogus'"),
        ("* * * * * task ?max=lots", "line 2.*option max='lots' must be an integer"),
        ("* * * * * task {not json}", "line 2.*payload is not valid JSON"),
        ("99 * * * * task", "line 2.*not a valid cron"),
    ],
)
def test_bad_crontab_lines_name_the_line(line: str, message: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=message):
        parse_crontab(f"# header\n{line}\n", where="crontab")


# -- files ------------------------------------------------------------------------------------------
def test_schedule_files_in_every_shape(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- {id: a, task: t, cron: '* * * * *'}\n- {id: b, task: t, cron: '0 * * * *'}\n")
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text("schedules:\n  - {id: a, task: t, cron: '* * * * *'}\ncrontab: |\n  0 4 * * * cleanup ?id=c\n")
    as_json = tmp_path / "s.json"
    as_json.write_text('{"schedules": [{"id": "j", "task": "t", "cron": "* * * * *"}], "crontab": ["0 1 * * * x"]}')
    lines = tmp_path / "crontab"
    lines.write_text("# graphile crontab, unchanged\n* * * * * ping\n0 4 * * * cleanup ?fill=1h\n")
    assert [e.id for e in crontab.load_schedules_file(listed)] == ["a", "b"]
    assert [e.id for e in crontab.load_schedules_file(wrapped)] == ["a", "c"]
    assert [e.id for e in crontab.load_schedules_file(as_json)] == ["j", "x"]
    assert [e.id for e in crontab.load_schedules_file(lines)] == ["ping", "cleanup"]


def test_bad_files_fail_with_the_file_and_entry(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("- {id: ok, task: t, cron: '* * * * *'}\n- {id: broken, task: t, cron: '* * *'}\n")
    with pytest.raises(errors.ConfigurationError, match=r"s\.yaml entry 2 \(id 'broken'\): cron"):
        crontab.load_schedules_file(bad)
    with pytest.raises(errors.ConfigurationError, match="cannot read"):
        crontab.load_schedules_file(tmp_path / "missing.yaml")
    top = tmp_path / "top.yaml"
    top.write_text("jobs: []\n")
    with pytest.raises(errors.ConfigurationError, match="unknown top-level key"):
        crontab.load_schedules_file(top)


def test_duplicate_ids_across_code_and_file_fail(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("- {id: every_minute, task: greet, cron: '0 * * * *', payload: {name: x}}\n")
    with pytest.raises(
        errors.ConfigurationError, match=r"'every_minute' is defined twice.*define_job.*s\.yaml entry 1"
    ):
        collect_entries(shared_jobs.registry, str(path))
    entries = collect_entries(shared_jobs.registry, None)
    assert [(e.id, e.cron) for e in entries] == [("every_minute", "* * * * *")]


# -- tick math ----------------------------------------------------------------------------------------
def test_ticks_utc_and_bounds() -> None:
    e = entry("*/15 * * * *")
    assert ticks_between(e, utc(2024, 1, 1, 10, 0), utc(2024, 1, 1, 11, 0)) == [
        utc(2024, 1, 1, 10, 15),
        utc(2024, 1, 1, 10, 30),
        utc(2024, 1, 1, 10, 45),
        utc(2024, 1, 1, 11, 0),
    ]
    assert crontab.next_tick(entry("0 0 29 2 *"), utc(2024, 3, 1)) == utc(2028, 2, 29)


def test_zone_offsets_apply() -> None:
    e = entry("0 9 * * *", "Europe/Berlin")
    assert ticks_between(e, utc(2024, 1, 15), utc(2024, 1, 16)) == [utc(2024, 1, 15, 8)]
    assert ticks_between(e, utc(2024, 7, 15), utc(2024, 7, 16)) == [utc(2024, 7, 15, 7)]


def test_spring_forward_skipped_time_fires_once_after_the_jump() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT in New York: 02:30 does not exist that day.
    daily = entry("30 2 * * *", "America/New_York")
    day = ticks_between(daily, utc(2024, 3, 9, 12), utc(2024, 3, 11, 12))
    assert day == [utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)]  # 03:30 EDT on the day of the jump
    # An interval schedule gets no extra or doubled ticks across the gap.
    quarter = entry("*/15 * * * *", "America/New_York")
    ticks = ticks_between(quarter, utc(2024, 3, 10, 6), utc(2024, 3, 10, 8))
    assert ticks == [utc(2024, 3, 10, 6) + timedelta(minutes=15 * i) for i in range(1, 9)]


def test_fall_back_repeated_time_fires_once() -> None:
    # 2024-10-27 03:00 CEST -> 02:00 CET in Berlin: 02:30 happens twice.
    daily = entry("30 2 * * *", "Europe/Berlin")
    assert ticks_between(daily, utc(2024, 10, 26, 12), utc(2024, 10, 27, 12)) == [utc(2024, 10, 27, 0, 30)]
    hourly = entry("30 * * * *", "Europe/Berlin")
    ticks = ticks_between(hourly, utc(2024, 10, 26, 23), utc(2024, 10, 27, 3))
    # 01:30 CEST, 02:30 CEST (first 02:30), 03:30 CET: the second 02:30 (01:30 UTC) does not fire again.
    assert ticks == [utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 2, 30)]


def test_new_york_fall_back() -> None:
    daily = entry("30 1 * * *", "America/New_York")
    assert ticks_between(daily, utc(2024, 11, 2, 12), utc(2024, 11, 4, 12)) == [
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 4, 6, 30),
    ]


def test_cron_ts_matches_graphile_format() -> None:
    assert cron_ts(utc(2024, 3, 10, 7, 30)) == "2024-03-10T07:30:00.000Z"
