"""Reads a graphile pool's queue statistics from its database.

The runtime's ``WorkerUtils`` is imported lazily so that the operator (and its unit tests) never
depends on it at import time; tests pass their own ``Reader``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jobworker import db, errors
from jobworker_operator import metrics
from jobworker_operator.apply import Api, ApiError
from jobworker_operator.model import Pool

# (database_url, schema) -> an object shaped like jobworker's QueueStats (contracts.md).
Reader = Callable[[str, str], Awaitable[Any]]
TIMEOUT_SECONDS = 10.0


class QueueStatsError(Exception):
    """The queue could not be read; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class Reading:
    stats: Any
    schema_version: int | None


async def worker_utils_reader(database_url: str, schema: str) -> Any:
    from jobworker.worker_utils import WorkerUtils  # lazy: the runtime is optional for the operator

    async with WorkerUtils(database_url, schema=schema) as utils:
        return await utils.queue_stats(top_queues=metrics.TOP_QUEUES)


async def schema_version(database_url: str, schema: str) -> int | None:
    """Highest applied migration id (graphile's ``<schema>.migrations``); None when not readable."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("select max(id) from {}.migrations").format(sql.Identifier(schema))
    try:
        async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
            row = await (await conn.execute(query)).fetchone()
    except psycopg.Error:
        return None
    return None if row is None or row[0] is None else int(row[0])


# Every secret part of every database URL read so far: the operator's log handlers mask them all
# (see __main__), whoever logs them (kopf included).
SEEN_SECRETS: set[str] = set()


def redact(text: str, url: str = "") -> str:
    """``text`` without ``url``'s password and other secret parts (libpq errors echo their input)."""
    return db.redact(text, db.secret_parts(url) if url else ())


def install_log_redaction() -> None:
    db.install_log_redaction(lambda: tuple(SEEN_SECRETS))


async def read(api: Api, pool: Pool, reader: Reader) -> Reading:
    assert pool.graphile is not None
    ref = pool.graphile.database_url
    try:
        url = await api.read_secret(pool.namespace, ref.name, ref.key)
    except ApiError as exc:
        raise QueueStatsError(f"cannot read the database URL: {exc}") from exc
    SEEN_SECRETS.update(db.secret_parts(url))
    try:
        db.check_database_url(url, f"the database URL in Secret {pool.namespace}/{ref.name} key {ref.key!r}")
    except errors.ConfigurationError as exc:
        raise QueueStatsError(str(exc)) from None
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            stats = await reader(url, pool.schema)
            version = await schema_version(url, pool.schema)
    except TimeoutError as exc:
        raise QueueStatsError(f"database unreachable: no answer within {TIMEOUT_SECONDS:.0f}s") from exc
    except Exception as exc:  # any driver/runtime error means the same thing to the user
        # `from None`: the original may carry the URL with its password into kopf's logs.
        raise QueueStatsError(f"database unreachable: {redact(str(exc), url) or type(exc).__name__}") from None
    return Reading(stats, version)
