"""The operator checks the rendered schedules file with the scheduler's own parser and reports it in status."""

from __future__ import annotations

import pytest

from jobworker_operator import reconcile
from tests.operator_unit.fake_api import FakeApi, conditions
from tests.operator_unit.helpers import body


async def no_stats(url: str, schema: str) -> None:
    raise AssertionError("no queue stats in these tests")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone 'Mars/Olympus_Mons' is not a known IANA time zone"),
        ({"cron": "61 * * * *"}, "cron '61 * * * *' is not a valid cron expression"),
    ],
)
async def test_a_schedule_the_scheduler_would_refuse_degrades_the_pool(entry: dict[str, str], message: str) -> None:
    schedule = {"id": "nightly", "task": "report", "cron": "0 3 * * *", **entry}
    api = FakeApi(body(name="pool", migration={"enabled": False}, scheduler={"schedules": [schedule]}))
    await reconcile.Runtime(api=api, reader=no_stats).trigger("ns", "pool")
    degraded = next(c for c in api.pool()["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "spec.scheduler.schedules entry 1 (id 'nightly')" in degraded["message"]
    assert message in degraded["message"]


async def test_good_schedules_are_no_problem() -> None:
    schedule = {"id": "nightly", "task": "report", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}
    api = FakeApi(body(name="pool", migration={"enabled": False}, scheduler={"schedules": [schedule]}))
    await reconcile.Runtime(api=api, reader=no_stats).trigger("ns", "pool")
    assert conditions(api)["Degraded"] == "False"
