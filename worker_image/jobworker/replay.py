"""Where the job endpoint records the signatures it ran, so that each runs at most once.

QStash signs every delivery attempt anew, each signature with its own id (``jti``) and a five-minute
life. ``MemorySeenTokens`` remembers them in this process: enough for one replica. ``PostgresSeenTokens``
records them in a table every replica shares (``_private_jobworker_seen_signatures``, jobworker migration
3): an ``insert ... on conflict do nothing`` decides atomically which replica runs a signature.

A store that cannot answer raises; the endpoint then answers 503 and runs nothing, because a delivery it
cannot prove fresh may be a replay (see docs/qstash-endpoint.md).
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import Protocol

from jobworker import db, errors, queries, sql
from jobworker.store import JobStore, PoolOptions

log = logging.getLogger("jobworker.endpoint")
TABLE = "_private_jobworker_seen_signatures"
PRUNE_PER_INSERT = 10
"""Expired rows each recorded signature removes at most: more than the one it adds, so the table shrinks
back to about five minutes of deliveries, and no request pays for a long backlog."""
POOL_WAIT = 1.0
"""Seconds a delivery waits for a pooled connection. The pool stops reconnecting while the server is down
(reconnect_timeout=0), so waiting longer would hold a delivery slot for nothing."""


class SeenTokens(Protocol):
    """Where the ids (``jti``) of the signatures already used are kept until those signatures expire."""

    async def first_use(self, jti: str, expires_at: float) -> bool:
        """Record ``jti``; False when it was recorded before (a replay). Raise when that cannot be known."""
        ...


class MemorySeenTokens:
    """This process's used token ids. Enough for one replica; many replicas share ``PostgresSeenTokens``.

    Only verified signatures reach it, so its size is bounded by QStash's own delivery rate times the
    five minutes a signature lives.
    """

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    async def first_use(self, jti: str, expires_at: float) -> bool:
        now = time.time()
        while self._heap and self._heap[0][0] < now:
            _, old = heapq.heappop(self._heap)
            self._expiry.pop(old, None)
        if jti in self._expiry:
            return False
        self._expiry[jti] = expires_at
        heapq.heappush(self._heap, (expires_at, jti))
        return True

    def __len__(self) -> int:
        return len(self._expiry)


class ReplayStoreUnavailableError(errors.DatabaseError):
    """The replay database did not answer; the delivery was not run."""


class PostgresSeenTokens:
    """Used token ids in a table shared by every replica (``replay_database_url``), through a JobStore pool.

    The pool opens on first use and closes with ``close()``. A statement that takes over ``timeout`` seconds
    (a frozen network, a locked table), an unreachable server or a missing table raise
    ``ReplayStoreUnavailableError``.
    """

    def __init__(self, url: str, schema: str = db.DEFAULT_SCHEMA, *, timeout: float = 5.0, max_size: int = 4) -> None:
        self.timeout = timeout
        self.store = JobStore(
            url,
            schema,
            pool=PoolOptions(
                max_size=max_size,
                wait=min(POOL_WAIT, timeout),
                reconnect_timeout=0,
                open_timeout=timeout,
                prepare_threshold=None,  # a transaction pooler may sit in front
            ),
            operation_timeout=timeout,
        )

    async def first_use(self, jti: str, expires_at: float) -> bool:
        params = {"jti": jti, "expires_at": expires_at, "prune": PRUNE_PER_INSERT}
        try:
            return await self.store.one(queries.RECORD_SIGNATURE, params) is not None
        except errors.DatabaseError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: errors.DatabaseError) -> ReplayStoreUnavailableError:
        if isinstance(exc.__cause__, TimeoutError):  # the store's bound is ours here: name our setting
            return ReplayStoreUnavailableError(
                f"the replay database did not answer within {self.timeout:g}s (JOBWORKER_REPLAY_TIMEOUT)"
            )
        return ReplayStoreUnavailableError(f"the replay database is unavailable: {exc}")

    async def check(self) -> None:
        """Raise ConfigurationError when the table is missing; log (and go on) when the server is down."""
        table = f"{sql.quote_schema(self.store.schema)}.{TABLE}"
        try:
            row = await self.store.one(queries.SEEN_SIGNATURES_READY, {"table": table})
        except errors.DatabaseError as exc:
            log.warning("%s; deliveries get 503 until it answers", self._unavailable(exc))
            return
        if row is None or not row.present:
            raise errors.ConfigurationError(
                f"JOBWORKER_REPLAY_DATABASE_URL: the database has no {self.store.schema}.{TABLE} table; run "
                "`jobworker migrate --database-url <that URL>` (jobworker migration 3) first"
            )

    async def close(self) -> None:
        await self.store.close()
