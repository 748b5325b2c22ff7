"""A migrate Job that exits 5 (a graphile schema older than 19) is its own status, not "newer than image"."""

from __future__ import annotations

from jobworker_operator import reconcile
from tests.operator_unit.fake_api import FakeApi
from tests.operator_unit.helpers import body


async def no_stats(url: str, schema: str) -> None:
    raise AssertionError("no queue stats in this test")


async def test_exit_5_is_schema_too_old_with_the_upgrade_path() -> None:
    api = FakeApi(body(name="pool"))
    rt = reconcile.Runtime(api=api, reader=no_stats)
    await rt.trigger("ns", "pool")
    (job,) = api.jobs()
    assert 5 in api.objects[("Job", job)]["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    api.finish(job, "Failed", "PodFailurePolicy", f"Container migrate for pod ns/{job}-x failed with exit code 5")
    await rt.trigger("ns", "pool")

    conditions = {c["type"]: c for c in api.pool()["status"]["conditions"]}
    assert (conditions["Degraded"]["status"], conditions["Degraded"]["reason"]) == ("True", "SchemaTooOld")
    assert "older than 19" in conditions["Degraded"]["message"]
    assert "graphile-worker@0.17" in conditions["Degraded"]["message"]
    assert "newer" not in conditions["Degraded"]["message"]
    assert ("Deployment", "pool-worker") not in api.objects
