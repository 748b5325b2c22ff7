"""The scheduler on real PostgreSQL: cron features, exactly-once across replicas, backfill, DST."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from jobworker import errors, httpserver, scheduler
from jobworker.crontab import ScheduleEntry, parse_crontab, parse_entry
from jobworker.scheduler import Scheduler
from tests import shared_jobs
from tests.integration.runtime import eventually, fetch, job_count, job_rows, make_worker

T0 = datetime(2024, 1, 1, 10, 0, 30, tzinfo=UTC)


def entries(*raw: dict[str, Any]) -> list[ScheduleEntry]:
    return [parse_entry(r, where=f"entry {i}") for i, r in enumerate(raw)]


def at(minutes: float, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes)


async def crons(url: str, task: str | None = None) -> list[dict[str, Any]]:
    rows = [r for r in await job_rows(url) if task is None or r["task_identifier"] == task]
    return sorted(rows, key=lambda r: (r["task_identifier"], r["run_at"]))


async def test_tick_enqueues_with_every_option_and_graphile_cron_payload(db_url: str) -> None:
    sched = Scheduler(
        entries(
            {
                "id": "minutely",
                "task": "ping",
                "cron": "* * * * *",
                "payload": {"who": "ops"},
                "queue": "pings",
                "priority": 3,
                "max_attempts": 2,
            },
            {"id": "hourly", "task": "ping", "cron": "0 * * * *"},
            {"id": "elsewhen", "task": "ping", "cron": "30 * * * *"},
        ),
        database_url=db_url,
    )
    async with sched:
        fired = await sched.tick(T0)
        assert sorted(f.schedule_id for f in fired) == ["hourly", "minutely"]
        again = await sched.tick(T0 + timedelta(seconds=20))
        assert again == []  # the same minute never fires twice
    rows = await crons(db_url)
    assert len(rows) == 2
    minutely = next(r for r in rows if r["queue_name"] == "pings")
    assert minutely["payload"] == {"who": "ops", "_cron": {"ts": "2024-01-01T10:00:00.000Z", "backfilled": False}}
    assert (minutely["priority"], minutely["max_attempts"]) == (3, 2)
    assert minutely["run_at"] == datetime(2024, 1, 1, 10, tzinfo=UTC)
    hourly = next(r for r in rows if r["queue_name"] is None)
    assert (hourly["priority"], hourly["max_attempts"]) == (0, 25)


async def test_consecutive_ticks_fire_each_minute_once(db_url: str) -> None:
    async with Scheduler(entries({"id": "m", "task": "ping", "cron": "*/2 * * * *"}), database_url=db_url) as sched:
        for minute in range(0, 10):
            await sched.tick(at(minute))
            await sched.tick(at(minute, T0 + timedelta(seconds=15)))
    ts = [r["payload"]["_cron"]["ts"] for r in await crons(db_url)]
    assert ts == [f"2024-01-01T10:{m:02d}:00.000Z" for m in range(0, 10, 2)]


async def test_definition_defaults_and_registry_schedules(db_url: str) -> None:
    registry = shared_jobs.registry
    found = scheduler.collect_entries(registry) + entries(
        {"id": "greeter", "task": "greet", "cron": "* * * * *", "payload": {"name": "Ada"}}
    )
    async with Scheduler(found, registry=registry, database_url=db_url) as sched:
        await sched.tick(T0)
    rows = {r["task_identifier"]: r for r in await crons(db_url)}
    assert set(rows) == {"every_minute", "greet"}
    assert rows["greet"]["max_attempts"] == 3  # from define_job("greet", max_attempts=3)
    # The scheduled job runs on a worker and its handler sees graphile's _cron payload.
    shared_jobs.CALLS.clear()
    await make_worker(db_url, *registry).run_once()
    by_job = {c.job: c for c in shared_jobs.CALLS}
    assert by_job["greet"].payload == {"name": "Ada", "times": 1}
    assert by_job["every_minute"].payload["_cron"] == {"ts": "2024-01-01T10:00:00.000Z", "backfilled": False}


async def test_job_key_replaces_pending_run(db_url: str) -> None:
    sched = Scheduler(
        entries({"id": "k", "task": "ping", "cron": "* * * * *", "job_key": "only-one"}), database_url=db_url
    )
    async with sched:
        for minute in range(3):
            await sched.tick(at(minute))
    rows = await crons(db_url)
    assert len(rows) == 1
    assert rows[0]["key"] == "only-one" and rows[0]["revision"] == 2
    assert rows[0]["payload"]["_cron"]["ts"] == "2024-01-01T10:02:00.000Z"


async def test_replicas_ticking_together_enqueue_each_tick_exactly_once(db_url: str) -> None:
    schedule = entries(
        {"id": "fast", "task": "ping", "cron": "* * * * *"},
        {"id": "five", "task": "ping", "cron": "*/5 * * * *", "backfill": "30m"},
        {"id": "nyc", "task": "ping", "cron": "*/3 * * * *", "timezone": "America/New_York"},
    )
    replicas = [Scheduler(schedule, database_url=db_url) for _ in range(3)]
    try:
        # Every replica ticks every second of 30 minutes, all at once, in a different interleaving.
        for minute in range(30):
            for second in (0, 20, 40):
                await asyncio.gather(*(r.tick(at(minute, T0 - timedelta(seconds=30 - second))) for r in replicas))
    finally:
        for r in replicas:
            await r.close()
    rows = await crons(db_url)
    assert await job_count(db_url) == 30 + 6 + 10  # every minute, every 5 minutes (with backfill), every 3
    ticks = [(r["payload"]["_cron"]["ts"], r["run_at"], r["id"]) for r in rows]
    per_tick: dict[tuple[str, datetime], int] = {}
    for ts, run_at, _ in ticks:
        per_tick[(ts, run_at)] = per_tick.get((ts, run_at), 0) + 1
    assert per_tick[("2024-01-01T10:15:00.000Z", datetime(2024, 1, 1, 10, 15, tzinfo=UTC))] == 3  # once per schedule
    assert max(per_tick.values()) == 3


async def test_replicas_running_their_own_sequences_concurrently(db_url: str) -> None:
    schedule = entries({"id": "fast", "task": "ping", "cron": "* * * * *"})

    async def replica() -> int:
        async with Scheduler(schedule, database_url=db_url) as sched:
            return sum([len(await sched.tick(at(m))) for m in range(20)])

    counts = await asyncio.gather(*(replica() for _ in range(3)))
    assert sum(counts) == 20
    assert await job_count(db_url) == 20


async def test_backfill_after_downtime_is_bounded_by_fill_and_max(db_url: str) -> None:
    hourly = {"id": "hourly", "task": "ping", "cron": "0 * * * *"}
    async with Scheduler(entries(hourly), database_url=db_url) as first:
        assert len(await first.tick(T0)) == 1  # 10:00, and the schedule is now known
    # Down from 10:00 to 16:00:30. Back with fill=3h: 14:00 and 15:00 backfilled, then 16:00; not 11:00-13:00.
    async with Scheduler(entries({**hourly, "backfill": "3h"}), database_url=db_url) as back:
        fired = await back.tick(at(6 * 60))
    assert [(f.ts.hour, f.backfilled) for f in fired] == [(14, True), (15, True), (16, False)]
    ts = [r["payload"]["_cron"] for r in await crons(db_url)][1:]
    assert ts[0] == {"ts": "2024-01-01T14:00:00.000Z", "backfilled": True}
    # max caps the jobs of one tick, keeping the newest.
    async with Scheduler(entries({**hourly, "backfill": "1d", "max": 2}), database_url=db_url) as capped:
        fired = await capped.tick(at(12 * 60))
    assert [f.ts.hour for f in fired] == [21, 22]


async def test_backfill_only_for_schedules_already_known(db_url: str) -> None:
    async with Scheduler(entries({"id": "old", "task": "ping", "cron": "0 * * * *"}), database_url=db_url) as s:
        await s.tick(T0)
    both = entries(
        {"id": "old", "task": "ping", "cron": "0 * * * *", "backfill": "5h"},
        {"id": "new", "task": "ping", "cron": "0 * * * *", "backfill": "5h"},
    )
    async with Scheduler(both, database_url=db_url) as s:
        fired = await s.tick(at(3 * 60))
    assert [(f.schedule_id, f.ts.hour) for f in fired] == [("old", 11), ("old", 12), ("old", 13), ("new", 13)]


async def test_dst_spring_forward_and_fall_back(db_url: str) -> None:
    # New York jumps 02:00 -> 03:00 on 2024-03-10 (07:00 UTC); Berlin repeats 02:00-03:00 on 2024-10-27.
    raw = [
        {"id": "ny-0230", "task": "ping", "cron": "30 2 * * *", "timezone": "America/New_York", "backfill": "12h"},
        {"id": "ny-half", "task": "ping", "cron": "*/30 * * * *", "timezone": "America/New_York", "backfill": "12h"},
    ]
    async with Scheduler(entries(*raw), database_url=db_url) as s:
        await s.tick(datetime(2024, 3, 10, 4, 0, 30, tzinfo=UTC))  # 23:00 EST: now known
        fired = await s.tick(datetime(2024, 3, 10, 9, 0, 30, tzinfo=UTC))  # 05:00 EDT
    daily = [f.ts for f in fired if f.schedule_id == "ny-0230"]
    assert daily == [datetime(2024, 3, 10, 7, 30, tzinfo=UTC)]  # once, at 03:30 EDT
    half = [f.ts for f in fired if f.schedule_id == "ny-half"]
    assert half == [datetime(2024, 3, 10, 4, 30, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(10)]

    berlin = [{"id": "be-0230", "task": "ping", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "backfill": "12h"}]
    async with Scheduler(entries(*berlin), database_url=db_url) as s:
        await s.tick(datetime(2024, 10, 26, 22, 0, 30, tzinfo=UTC))
        for hour in range(23, 28):  # tick every 15 minutes through the repeated hour
            for quarter in range(4):
                await s.tick(datetime(2024, 10, 26, 0, 0, 30, tzinfo=UTC) + timedelta(hours=hour, minutes=15 * quarter))
    runs = [r["run_at"] for r in await crons(db_url) if r["payload"]["_cron"]["ts"].startswith("2024-10-2")]
    assert runs == [datetime(2024, 10, 27, 0, 30, tzinfo=UTC)]  # 02:30 CEST only, not 02:30 CET


async def test_bad_schedules_fail_at_startup_naming_the_entry(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigurationError, match=r"'greeter'.*payload does not fit job 'greet'.*name"):
        Scheduler(
            entries({"id": "greeter", "task": "greet", "cron": "* * * * *"}),
            registry=shared_jobs.registry,
            database_url=db_url,
        )
    with pytest.raises(errors.ConfigurationError, match="'a' is defined twice"):
        Scheduler(parse_crontab("* * * * * a\n0 * * * * a\n"), database_url=db_url)
    bad = tmp_path / "schedules.yaml"
    bad.write_text(
        "schedules:\n"
        "  - {id: fine, task: greet, cron: '* * * * *', payload: {name: x}}\n"
        "  - {id: zoned, task: greet, cron: '* * * * *', timezone: Europe/Nowhere}\n"
    )
    args = SimpleNamespace(
        tasks="tests.shared_jobs", schedules=str(bad), database_url=db_url, schema=None, http_port=None, json=False
    )
    with pytest.raises(
        errors.ConfigurationError, match=r"schedules\.yaml entry 2 \(id 'zoned'\): timezone 'Europe/Nowhere'"
    ):
        scheduler.main(args)  # type: ignore[arg-type]


async def test_run_loop_fires_the_current_minute_and_stops(db_url: str) -> None:
    sched = Scheduler(entries({"id": "now", "task": "ping", "cron": "* * * * *"}), database_url=db_url)
    task = asyncio.create_task(sched.run())
    try:
        await eventually(lambda: job_count(db_url), lambda n: n >= 1, what="the startup tick's job")
        assert sched.healthy
    finally:
        sched.stop()
        await asyncio.wait_for(task, 5)
    assert not sched.healthy


async def test_health_server_reports_the_loop_and_metrics(db_url: str) -> None:
    sched = Scheduler(entries({"id": "metered", "task": "ping", "cron": "* * * * *"}), database_url=db_url)
    async with sched:
        await sched.tick(T0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    runner = await httpserver.start(port, lambda: sched.healthy, host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as session:
            health = await session.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status == 200 and await health.json() == {"status": "ok"}
            sched.stop()
            health = await session.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status == 503 and await health.json() == {"status": "unhealthy"}
            text = await (await session.get(f"http://127.0.0.1:{port}/metrics")).text()
            assert 'jobworker_schedule_fires_total{schedule="metered"} 1.0' in text
    finally:
        await runner.cleanup()


async def test_graphile_crontab_line_options_reach_the_job(db_url: str) -> None:
    lines = parse_crontab('0 10 * * * report ?id=r&max=4&queue=q&jobKey=rk&priority=2&fill=2h {"kind": "daily"}\n')
    async with Scheduler(lines, database_url=db_url) as sched:
        await sched.tick(T0)
    [row] = await crons(db_url)
    assert (row["task_identifier"], row["queue_name"], row["key"]) == ("report", "q", "rk")
    assert (row["max_attempts"], row["priority"]) == (4, 2)
    assert row["payload"] == {"kind": "daily", "_cron": {"ts": "2024-01-01T10:00:00.000Z", "backfilled": False}}
    known = await fetch(db_url, "select identifier, last_execution from graphile_worker._private_known_crontabs")
    assert known == [{"identifier": "r", "last_execution": datetime(2024, 1, 1, 10, tzinfo=UTC)}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"payload": {"ratio": float("nan")}}, "entry 0 (id 'bad'): payload: not JSON-serialisable"),
        ({"payload": {"ratio": float("inf")}}, "entry 0 (id 'bad'): payload: not JSON-serialisable"),
        ({"cron": "0 0 30 2 *"}, "entry 0 (id 'bad'): cron '0 0 30 2 *' never fires"),
    ],
    ids=["nan", "infinity", "30-february"],
)
def test_a_schedule_postgresql_or_croniter_would_refuse_is_rejected_at_load_naming_its_id(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        entries({"id": "bad", "task": "ping", "cron": "* * * * *", **raw})
    assert str(caught.value).startswith(message)


def test_nan_in_a_yaml_schedules_file_is_rejected_at_load(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("- id: ratio\n  task: ping\n  cron: '* * * * *'\n  payload: {ratio: .nan}\n")
    with pytest.raises(errors.ConfigurationError, match=r"id 'ratio'.*payload: not JSON-serialisable"):
        scheduler.collect_entries(shared_jobs.registry, str(path))


async def test_one_failing_entry_at_tick_time_is_counted_and_the_others_still_fire(db_url: str) -> None:
    from prometheus_client import REGISTRY

    def errors_of(schedule: str) -> float:
        return REGISTRY.get_sample_value("jobworker_schedule_errors_total", {"schedule": schedule}) or 0.0

    # Built directly, past the load-time checks, as an entry from an older version could be.
    bad_payload = ScheduleEntry(id="a-nan", task="ping", cron="* * * * *", payload={"x": float("nan")})
    never = ScheduleEntry(id="b-never", task="ping", cron="0 0 30 2 *")
    good = ScheduleEntry(id="c-good", task="ping", cron="* * * * *")
    before = (errors_of("a-nan"), errors_of("b-never"))
    async with Scheduler([bad_payload, never, good], database_url=db_url) as sched:
        fired = await sched.tick(T0)
    assert [f.schedule_id for f in fired] == ["c-good"]
    assert (errors_of("a-nan"), errors_of("b-never")) == (before[0] + 1, before[1] + 1)
    assert len(await crons(db_url)) == 1
