"""The provider port: build_queue/build_runtime per JOBS_PROVIDER, the noop 409 contract, and one job
module running unchanged under graphile and qstash."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest

from jobworker import errors
from jobworker.config import JobsConfig, QStashConfig
from jobworker.endpoint import EndpointRuntime
from jobworker.providers import NoopJobQueue, build_queue, build_runtime, enqueue_or_skip
from jobworker.providers.graphile import GraphileJobQueue
from jobworker.providers.qstash import QStashJobQueue
from jobworker.registry import JobRegistry
from jobworker.worker import Worker
from tests import shared_jobs
from tests.integration.runtime import FAST, job_rows
from tests.qstash_standin import running_standin, signature


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_noop_enqueue_raises_409_not_configured() -> None:
    queue = build_queue(JobsConfig.from_env({}))
    assert isinstance(queue, NoopJobQueue)
    with pytest.raises(errors.JobsNotConfiguredError, match=r"cannot enqueue 'greet'.*JOBS_PROVIDER") as caught:
        await queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="x"))
    assert (caught.value.status, caught.value.code) == (409, "jobs.not_configured")
    assert build_runtime(JobsConfig(provider="noop"), shared_jobs.registry) is None


async def test_enqueue_or_skip_degrades_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    queue = NoopJobQueue()
    with caplog.at_level(logging.WARNING, logger="jobworker.providers.noop"):
        for _ in range(3):
            assert await enqueue_or_skip(queue, shared_jobs.greet_sync, shared_jobs.Greeting(name="x")) is None
    assert [r.getMessage() for r in caplog.records].count(
        "skipped job 'greet_sync': cannot enqueue 'greet_sync': background jobs are not configured "
        "(set JOBS_PROVIDER to graphile or qstash)"
    ) == 1


async def test_enqueue_or_skip_still_raises_real_errors(db_url: str) -> None:
    queue = GraphileJobQueue(db_url)
    try:
        sent = await enqueue_or_skip(queue, shared_jobs.greet, shared_jobs.Greeting(name="x"))
        assert sent is not None and sent.job_name == "greet"
        with pytest.raises(errors.ConfigurationError):
            await enqueue_or_skip(queue, shared_jobs.greet, shared_jobs.Greeting(name="x"), priority=10**6)
    finally:
        await queue.close()


async def test_graphile_provider_builds_queue_and_worker(db_url: str) -> None:
    # The pair built from the environment must work together on that database: the queue's job lands in
    # its table, and the runtime, with the registry it was given, claims and runs it.
    shared_jobs.CALLS.clear()
    config = JobsConfig.from_env({"JOBS_PROVIDER": "graphile", "DATABASE_URL": db_url})
    queue = build_queue(config)
    try:
        sent = await queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="port"), job_key="k")
    finally:
        await queue.close()
    assert [(str(r["id"]), r["task_identifier"], r["key"]) for r in await job_rows(db_url)] == [(sent.id, "greet", "k")]
    runtime = build_runtime(config, shared_jobs.registry)
    assert isinstance(runtime, Worker)
    assert await runtime.run_once() == 1
    assert [(c.job, c.provider, c.job_id, c.payload["name"]) for c in shared_jobs.CALLS] == [
        ("greet", "graphile", sent.id, "port")
    ]
    assert await job_rows(db_url) == []


async def test_same_job_module_under_graphile_and_qstash(db_url: str) -> None:
    shared_jobs.CALLS.clear()
    payload = shared_jobs.Greeting(name="Ada", times=2)

    # graphile: enqueue into PostgreSQL, a Worker runs it.
    queue = GraphileJobQueue(db_url)
    try:
        sent = await queue.enqueue(shared_jobs.greet, payload, job_key="ada")
        flaky = await queue.enqueue(shared_jobs.flaky, shared_jobs.Flaky(succeed_on=1))
    finally:
        await queue.close()
    assert (await job_rows(db_url))[0]["max_attempts"] == 3
    await Worker(shared_jobs.registry, database_url=db_url, **FAST).run_once()
    graphile_calls = list(shared_jobs.CALLS)
    shared_jobs.CALLS.clear()

    # qstash: publish through the stand-in; build_runtime serves the endpoint that runs it.
    async with running_standin() as standin:
        port = free_port()
        config = QStashConfig(
            token=standin.token,
            url=standin.url,
            current_signing_key=standin.current_key,
            next_signing_key=standin.next_key,
            callback_url=f"http://127.0.0.1:{port}",
        )
        runtime = build_runtime(JobsConfig(provider="qstash", qstash=config), shared_jobs.registry, port=port)
        assert isinstance(runtime, EndpointRuntime)
        serving = asyncio.create_task(runtime.run())
        await asyncio.wait_for(runtime.started.wait(), 5)
        qstash_queue = build_queue(JobsConfig(provider="qstash", qstash=config))
        assert isinstance(qstash_queue, QStashJobQueue)
        try:
            q_sent = await qstash_queue.enqueue(shared_jobs.greet, payload, job_key="ada")
            q_flaky = await qstash_queue.enqueue(shared_jobs.flaky, shared_jobs.Flaky(succeed_on=1))
            for message_id in (q_sent.id, q_flaky.id):
                assert (await standin.settled(message_id)).state == "delivered"
        finally:
            await qstash_queue.close()
            runtime.stop()
            await serving
    qstash_calls = list(shared_jobs.CALLS)

    def comparable(calls: list[shared_jobs.Call]) -> list[tuple[object, ...]]:
        return sorted((c.job, str(c.payload), c.attempt, c.max_attempts, c.job_key) for c in calls)

    assert comparable(graphile_calls) == comparable(qstash_calls)
    assert {c.provider for c in graphile_calls} == {"graphile"} and {c.provider for c in qstash_calls} == {"qstash"}
    assert {c.job_id for c in graphile_calls} == {sent.id, flaky.id}
    assert {c.job_id for c in qstash_calls} == {q_sent.id, q_flaky.id}


async def test_endpoint_runtime_stops_cleanly() -> None:
    config = QStashConfig(current_signing_key="a" * 32, next_signing_key="b" * 32, callback_url="http://127.0.0.1")
    runtime = build_runtime(JobsConfig(provider="qstash", qstash=config), JobRegistry(), port=0)
    assert isinstance(runtime, EndpointRuntime)
    task = asyncio.create_task(runtime.run())
    await asyncio.wait_for(runtime.started.wait(), 5)
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{runtime.port}/v1/jobs/run/x"
        response = await session.post(url, data=b"{}", headers={"Upstash-Signature": signature("a" * 32, url, b"{}")})
        assert response.status == 401  # signed for the wrong URL: callback is http://127.0.0.1 without port
    runtime.stop()
    await asyncio.wait_for(task, 5)
