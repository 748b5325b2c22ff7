"""build_runtime() connects its Worker through WORKER_DATABASE_URL, as `jobworker worker` does (issue 11, item 9)."""

from __future__ import annotations

import socket

from jobworker.config import JobsConfig
from jobworker.providers import build_runtime
from jobworker.providers.graphile import GraphileJobQueue
from jobworker.worker import Worker
from tests import shared_jobs


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


async def test_the_worker_of_build_runtime_uses_worker_database_url(db_url: str) -> None:
    shared_jobs.CALLS.clear()
    queue = GraphileJobQueue(db_url)
    try:
        await queue.enqueue(shared_jobs.greet, shared_jobs.Greeting(name="Ada"))
    finally:
        await queue.close()
    # DATABASE_URL is the transaction pooler enqueuers use, unusable for LISTEN (here: nothing listens at all).
    env = {"JOBS_PROVIDER": "graphile", "DATABASE_URL": closed_port_url(), "WORKER_DATABASE_URL": db_url}
    config = JobsConfig.from_env(env)
    assert config.worker_database_url == db_url
    worker = build_runtime(config, shared_jobs.registry)
    assert isinstance(worker, Worker)
    assert await worker.run_once() == 1
    assert shared_jobs.CALLS
