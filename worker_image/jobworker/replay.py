"""Where the job endpoint records the signatures it ran, so that each runs at most once.

QStash signs every delivery attempt anew, each signature with its own id (``jti``) and a five-minute
life. ``MemorySeenTokens`` remembers them in this process: enough for one replica. ``PostgresSeenTokens``
records them in a table every replica shares (``_private_jobworker_seen_signatures``, jobworker migration
3): an ``insert ... on conflict do nothing`` decides atomically which replica runs a signature.

A store that cannot answer raises; the endpoint then answers 503 and runs nothing, because a delivery it
cannot prove fresh may be a replay (see docs/qstash-endpoint.md).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from jobworker import db, errors, sql

log = logging.getLogger("jobworker.endpoint")
TABLE = "_private_jobworker_seen_signatures"
PRUNE_PER_INSERT = 10
"""Expired rows each recorded signature removes at most: more than the one it adds, so the table shrinks
back to about five minutes of deliveries, and no request pays for a long backlog."""
POOL_WAIT = 1.0
"""Seconds a delivery waits for a pooled connection. The pool stops reconnecting while the server is down
(reconnect_timeout=0); waiting for its default 30 s would hold a delivery slot for nothing."""


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
    """Used token ids in a table shared by every replica (``replay_database_url``).

    The pool opens on first use and closes with ``close()``; a statement that takes over ``timeout``
    seconds (a frozen network, a locked table) raises ``ReplayStoreUnavailableError``, as does an
    unreachable server.
    """

    def __init__(self, url: str, schema: str = db.DEFAULT_SCHEMA, *, timeout: float = 5.0, max_size: int = 4) -> None:
        self.url = url
        self.schema = db.resolve_schema(schema)
        self.timeout = timeout
        self._max_size = max_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()

    async def _opened(self) -> AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]:
        async with self._lock:
            if self._pool is None:
                pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    kwargs={
                        "autocommit": True,
                        "row_factory": dict_row,
                        "prepare_threshold": 0,  # a transaction pooler may sit in front
                        **db.connect_options(self.url),
                    },
                    open=False,
                    reconnect_timeout=0,
                    name="jobworker-replay",
                )
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            async with asyncio.timeout(self.timeout):
                pool = await self._opened()
                async with pool.connection(timeout=min(POOL_WAIT, self.timeout)) as conn:
                    cur = await conn.execute(sql.query(name, self.schema), params)
                    return await cur.fetchall()
        except TimeoutError:
            raise ReplayStoreUnavailableError(
                f"the replay database did not answer within {self.timeout:g} s (replay_timeout)"
            ) from None
        except psycopg.errors.UndefinedTable as exc:
            raise ReplayStoreUnavailableError(
                f"the replay database has no {self.schema}.{TABLE}: run `jobworker migrate` against "
                "JOBWORKER_REPLAY_DATABASE_URL"
            ) from exc
        except psycopg.Error as exc:  # psycopg_pool's PoolTimeout is a psycopg.OperationalError too
            raise ReplayStoreUnavailableError(f"the replay database is unavailable: {db.describe(exc)}") from exc

    async def first_use(self, jti: str, expires_at: float) -> bool:
        rows = await self._fetch("record_signature", {"jti": jti, "expires_at": expires_at, "prune": PRUNE_PER_INSERT})
        return bool(rows)

    async def check(self) -> None:
        """Raise ConfigurationError when the table is missing; log (and go on) when the server is down."""
        try:
            [row] = await self._fetch("seen_signatures_ready", {"table": f"{sql.quote_schema(self.schema)}.{TABLE}"})
        except ReplayStoreUnavailableError as exc:
            log.warning("%s; deliveries get 503 until it answers", exc)
            return
        if not row["present"]:
            raise errors.ConfigurationError(
                f"JOBWORKER_REPLAY_DATABASE_URL: the database has no {self.schema}.{TABLE} table; run "
                "`jobworker migrate --database-url <that URL>` (jobworker migration 3) first"
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
