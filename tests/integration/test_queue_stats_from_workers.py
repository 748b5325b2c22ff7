"""The operator's no-Secrets mode (issue 11, item 3): queue statistics come from a worker's
``/metrics?queue_stats=1`` (jobworker.httpserver, reading the worker's own database), never from a Secret."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from jobworker import httpserver, migrate
from jobworker.worker_utils import TOP_QUEUES, WorkerUtils
from jobworker_operator import names, queue_stats, reconcile
from tests.integration.runtime import fetch
from tests.operator_unit.fake_api import FakeApi
from tests.operator_unit.helpers import body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NoSecretsApi(FakeApi):
    def __init__(self, pool: dict[str, Any], port: int) -> None:
        super().__init__(pool)
        self.port = port

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        raise AssertionError("the workers mode must never read a Secret")

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        if kind == "EndpointSlice":
            assert selector == f"kubernetes.io/service-name={names.metrics_service('pool')}"
            return [{"endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}]
        return await super().list(api_version, kind, namespace, selector)


async def test_the_operator_reads_queue_stats_from_a_worker_without_any_secret(db_url: str) -> None:
    await fetch(db_url, "select graphile_worker.add_job('mail', '{}'::json) from generate_series(1, 3)")
    await fetch(db_url, "select graphile_worker.add_job('mail', '{}'::json, queue_name => 'q') ")

    async def read() -> tuple[Any, int | None]:
        async with WorkerUtils(db_url) as utils:
            stats = await utils.queue_stats(top_queues=TOP_QUEUES)
        return stats, (await migrate.schema_version(db_url))[0]

    port = free_port()
    runner = await httpserver.start(port, lambda: True, "127.0.0.1", queue_stats=read)
    try:
        # Prometheus' own scrape does not pay for the query.
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert "jobworker_queue_reading_jobs" not in await resp.text()

        api = NoSecretsApi(body(name="pool", migration={"enabled": False}, metrics={"port": port}), port)
        rt = reconcile.Runtime(api=api, reader=queue_stats.worker_utils_reader, stats_source="workers")
        await rt.trigger("ns", "pool", refresh_stats=True)
        status = api.pool()["status"]
        assert status["queue"]["ready"] == 4
        assert status["schemaVersion"] == (await migrate.schema_version(db_url))[0]
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "False", degraded
    finally:
        await runner.cleanup()


async def test_no_ready_worker_is_a_clear_problem() -> None:
    class Empty(NoSecretsApi):
        async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
            return [] if kind == "EndpointSlice" else await super().list(api_version, kind, namespace, selector)

    api = Empty(body(name="pool", migration={"enabled": False}), 1)
    rt = reconcile.Runtime(api=api, reader=queue_stats.worker_utils_reader, stats_source="workers")
    await rt.trigger("ns", "pool", refresh_stats=True)
    degraded = next(c for c in api.pool()["status"]["conditions"] if c["type"] == "Degraded")
    assert "no ready worker behind Service pool-metrics" in degraded["message"]


def test_a_reading_without_the_series_names_the_cause() -> None:
    with pytest.raises(queue_stats.QueueStatsError, match="predates"):
        queue_stats.parse_worker_reading("# nothing\n")
