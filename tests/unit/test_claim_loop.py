"""ClaimLoop.sleep: the wait between claims, which batch mode runs once per finished job."""

from __future__ import annotations

import asyncio

from jobworker.claim_loop import ClaimLoop
from jobworker.settings import WorkerSettings


def make_loop() -> ClaimLoop:
    # sleep() touches only the wake event: nothing here reaches a database.
    return ClaimLoop(
        None,  # type: ignore[arg-type]
        "worker-1",
        WorkerSettings(),
        task_ids={},
        runner=None,  # type: ignore[arg-type]
        finisher=None,  # type: ignore[arg-type]
        local=None,
        stopping=lambda: False,
        fenced=lambda: False,
    )


async def test_sleep_ends_on_wake_without_a_task_of_its_own() -> None:
    claims = make_loop()
    before = len(asyncio.all_tasks())
    sleeper = asyncio.create_task(claims.sleep(60))
    for _ in range(3):
        await asyncio.sleep(0)
    # Only the sleeper itself: asyncio.wait_for wrapped the wait in one more task on every call.
    assert len(asyncio.all_tasks()) == before + 1
    claims.wake()
    await asyncio.wait_for(sleeper, 5)


async def test_sleep_ends_after_its_interval_and_at_once_when_already_woken() -> None:
    claims = make_loop()
    await asyncio.wait_for(claims.sleep(0.01), 5)
    claims.wake()
    await asyncio.wait_for(claims.sleep(60), 1)
