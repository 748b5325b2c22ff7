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

from jobworker.heartbeat import Heartbeat
from jobworker.settings import WorkerSettings

REPLY_DELAY = 0.3


async def test_a_late_reply_does_not_make_the_heartbeat_look_fresher() -> None:
    stamped: list[float] = []

    async def fetch(name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if name == "heartbeat":
            stamped.append(time.monotonic())  # what the database records (its now()), then a slow reply
            await asyncio.sleep(REPLY_DELAY)
        return []

    heartbeat = Heartbeat(fetch, "w-1", WorkerSettings(), ["t"], on_fenced=lambda: 0, on_restored=lambda: None)
    await heartbeat.beat()
    assert heartbeat.ok_at <= stamped[0]
