"""The fence counts from when a heartbeat was sent, never from when its reply arrived.

The sweep judges a worker by the time the database stamped on its heartbeat (its now(), at or after the
send). A reply delivered late (a slow connection, a starved process, a busy event loop) made the worker date its
heartbeat later than the database had, so the sweep could take its jobs before the worker fenced itself, and
another worker completed a job while its run here still went on (issue 10; found by the chaos suite).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobworker import queries
from jobworker.heartbeat import Heartbeat
from jobworker.settings import WorkerSettings
from jobworker.store import JobStore
from tests.integration.runtime import fetch

REPLY_DELAY = 0.5


class SlowReplies(JobStore):
    """A real store whose heartbeat reply reaches the worker ``REPLY_DELAY`` after the database took it."""

    sent: list[float]

    async def execute(self, query: Any, params: Any = None) -> None:
        if query is queries.HEARTBEAT:
            self.sent.append(time.monotonic())
            await super().execute(query, params)
            await asyncio.sleep(REPLY_DELAY)
            return
        await super().execute(query, params)


async def test_a_late_reply_does_not_make_the_heartbeat_look_fresher(db_url: str) -> None:
    async with SlowReplies(db_url, "graphile_worker") as store:
        store.sent = []
        heartbeat = Heartbeat(store, "w-1", WorkerSettings(), ["t"], on_fenced=lambda: 0, on_restored=lambda: None)
        await heartbeat.beat()
    assert await fetch(db_url, "select id from graphile_worker._private_workers") == [{"id": "w-1"}]
    assert heartbeat.ok_at <= store.sent[0]
