"""ClaimLoop: the wait between claims (batch mode runs it once per finished job), and claiming again at once
after a claim that filled fewer slots than were free."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from jobworker.claim_loop import ClaimLoop
from jobworker.queries import ClaimedJob
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


class FakeRunner:
    """Holds started rows; the claim loop reads only its length and calls start."""

    def __init__(self) -> None:
        self.started: list[ClaimedJob] = []

    def __len__(self) -> int:
        return 0  # every started job has already finished: all slots free again

    def start(self, row: ClaimedJob, *, stopping: bool = False) -> None:
        self.started.append(row)


class FakeFinisher:
    writes_done = 0
    busy = False


def claimed(job_id: int, queue_id: int | None = None) -> ClaimedJob:
    return ClaimedJob(job_id, 1, queue_id, "{}", 0, datetime.now(UTC), 1, 25, None, None, "t", None)


async def claims_made(first: list[ClaimedJob]) -> list[int]:
    """Run the default-mode loop: the first claim returns ``first``, later ones nothing; return each claim's limit."""
    loop = ClaimLoop(
        None,  # type: ignore[arg-type]
        "worker-1",
        WorkerSettings(concurrency=10, poll_interval=60),
        task_ids={"t": 1},
        runner=FakeRunner(),  # type: ignore[arg-type]
        finisher=FakeFinisher(),  # type: ignore[arg-type]
        local=None,
        stopping=lambda: False,
        fenced=lambda: False,
    )
    limits: list[int] = []

    async def claim(limit: int) -> list[ClaimedJob]:
        limits.append(limit)
        return first if len(limits) == 1 else []

    loop.claim = claim  # type: ignore[method-assign]
    task = asyncio.create_task(loop.run(drain=False))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return limits


async def test_a_short_claim_with_a_named_queue_job_claims_again_at_once() -> None:
    # One job per named queue may have left runnable jobs past the claim's limit.
    assert await claims_made([claimed(1, queue_id=7), claimed(2)]) == [10, 10]
