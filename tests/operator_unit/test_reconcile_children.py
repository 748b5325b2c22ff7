"""What reconcile writes besides the rendered children: the replicas /scale reads, and the removal of a
ServiceMonitor the provider no longer has (issue 11, item 5)."""

from __future__ import annotations

from typing import Any

from jobworker_operator import names, reconcile
from tests.operator_unit.fake_api import FakeApi
from tests.operator_unit.helpers import body


async def no_stats(url: str, schema: str) -> None:
    raise AssertionError("no queue stats in these tests")


async def test_unset_replicas_are_written_so_that_scale_reads_them() -> None:
    api = FakeApi(body(name="pool", migration={"enabled": False}))
    await reconcile.Runtime(api=api, reader=no_stats).trigger("ns", "pool")
    # The scale subresource's specReplicasPath; an HPA reading 0 there does nothing.
    assert api.pool()["spec"]["workers"]["replicas"] == 1
    assert api.deployment("pool-worker")["spec"]["replicas"] == 1


async def test_autoscaled_pools_keep_replicas_unset() -> None:
    api = FakeApi(body(name="pool", migration={"enabled": False}, workers={"autoscaling": {"maxReplicas": 3}}))
    await reconcile.Runtime(api=api, reader=no_stats).trigger("ns", "pool")
    assert "replicas" not in api.pool()["spec"]["workers"]


class MonitorApi(FakeApi):
    """Records ServiceMonitor deletes (FakeApi keeps no ServiceMonitors of its own)."""

    def __init__(self, pool_body: dict[str, Any]) -> None:
        super().__init__(pool_body)
        self.deleted: list[tuple[str, str]] = []

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.deleted.append((kind, name))
        await super().delete(api_version, kind, namespace, name)


async def test_the_service_monitor_goes_when_the_provider_changes() -> None:
    api = MonitorApi(body(name="pool", migration={"enabled": False}, metrics={"serviceMonitor": True}))
    rt = reconcile.Runtime(api=api, reader=no_stats)
    await rt.trigger("ns", "pool")
    monitor = api.objects[("ServiceMonitor", "pool-metrics")]
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    api.pool()["spec"]["provider"] = {"type": "noop"}
    api.pool()["metadata"]["generation"] += 1
    await rt.trigger("ns", "pool")
    assert ("ServiceMonitor", names.metrics_service("pool")) in api.deleted
    assert ("ServiceMonitor", "pool-metrics") not in api.objects
