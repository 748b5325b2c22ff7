"""Shared plumbing for the Python peer runners. Standard library only: each peer runs in its own venv.

Protocol with bench/run.py (the orchestrator), one line each, on stdout, prefixed ``@@BENCH``:
  runner -> ``@@BENCH READY``               set up (schema checked, worker built) and idle
  orchestrator -> ``GO`` (stdin)            start the measured part
  runner -> ``@@BENCH DONE {json}``         measured part over; figures measured inside the runner
  orchestrator -> ``EXIT`` (stdin)          shut down and exit
Anything else a peer prints (logs) is read and dropped by the orchestrator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

PREFIX = "@@BENCH"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--db", required=True, help="database URL")
    p.add_argument(
        "--mode",
        required=True,
        choices=["install", "prefill", "enqueue-batch", "enqueue-single", "drain", "latency-worker", "latency-enqueue"],
    )
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--variant", default="default", help="default | batch")
    p.add_argument("--chunk", type=int, default=1_000, help="jobs per batch-enqueue call")
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--min-id", type=int, default=0, help="drain (graphile schema): the first id of the batch to run")
    p.add_argument(
        "--procs",
        type=int,
        default=1,
        help="drain: worker processes sharing the batch (scale-out); each waits for the table only",
    )
    return p


def say(kind: str, data: Any = None) -> None:
    line = f"{PREFIX} {kind}" + (f" {json.dumps(data)}" if data is not None else "")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


async def handshake() -> None:
    """READY, then wait for GO."""
    say("READY")
    line = await read_line()
    if line != "GO":
        raise SystemExit(f"expected GO, got {line!r}")


async def finish(data: dict[str, Any]) -> None:
    """DONE with the figures, then wait for EXIT so teardown is outside the CPU window."""
    say("DONE", data)
    await read_line()


def gaps(n: int, seed: int) -> list[float]:
    """The latency workload's pauses between enqueues: 5-25 ms, the same sequence for every peer."""
    rnd = random.Random(seed)
    return [rnd.uniform(0.005, 0.025) for _ in range(n)]


async def latency_enqueue(n: int, seed: int, add: Callable[[dict[str, Any]], Awaitable[Any]]) -> dict[str, Any]:
    """Enqueue ``n`` jobs one at a time; each payload carries the wall-clock time just before the add call
    (``t``) and its number (``i``). ``committed[i]`` is the time the call returned, i.e. after its commit
    (the add is one autocommit statement): commit->start is the handler's start minus that, which leaves
    out the enqueuer's own commit (an fsync under durable settings) and counts only the worker's path."""
    await handshake()
    committed: list[float] = []
    for i, pause in enumerate(gaps(n, seed)):
        await add({"t": time.time(), "i": i})
        committed.append(time.time())
        await asyncio.sleep(pause)
    return {"enqueued": n, "committed": committed}


async def wait_drained(count_remaining: Callable[[], Awaitable[int]], handled: Callable[[], int], n: int) -> None:
    """Wait until every job has run and no job is left in the table (results written back)."""
    while handled() < n:  # noqa: ASYNC110 - polling a counter the handlers bump (n is 0 in scale-out)
        await asyncio.sleep(0.002)
    # In scale-out (n == 0) this polls for the whole drain: every 20 ms, so the poll itself stays a
    # small share of the server's work (at 2 ms it was ~40 CPU-ms per 1,000 jobs with 2 processes).
    pause = 0.002 if n else 0.02
    while await count_remaining() > 0:  # noqa: ASYNC110 - polling the database
        await asyncio.sleep(pause)


class Latencies:
    """Handler-side record of enqueue->start delays, in milliseconds."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: list[float] = []
        self.starts: dict[int, float] = {}
        self.done = asyncio.Event()

    def record(self, payload: Any) -> None:
        now = time.time()
        t = payload.get("t") if isinstance(payload, dict) else None
        if t is not None:
            self.values.append((now - float(t)) * 1000.0)
            self.starts[int(payload.get("i", -1))] = now
        if len(self.values) >= self.n:
            self.done.set()

    def report(self) -> dict[str, Any]:
        return {"latencies_ms": self.values, "starts": self.starts}
