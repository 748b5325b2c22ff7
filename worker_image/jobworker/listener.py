"""LISTEN: wake the claim loop on ``jobs:insert``, and stop the worker on a breaking ``worker:migrate``.

graphile-worker's migrator sends ``worker:migrate`` with ``{"migrationNumber": N, "breaking": bool}`` in the
transaction that applies a migration (jobworker's migrate.py does the same), and its workers exit with code
57 on a breaking one, since running on a schema they may not understand is unsafe. jobworker's worker does
the same: ``on_breaking_migration`` stops it gracefully, and ``jobworker worker`` exits with
``EXIT_BREAKING_MIGRATION`` (57).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from jobworker import db, errors
from jobworker.backoff import Backoff

log = logging.getLogger("jobworker.worker")
CHANNEL = "jobs:insert"
MIGRATE_CHANNEL = "worker:migrate"


class Listener:
    """Owns the LISTEN connection: reconnects with a 1 s backoff cap, and probes a quiet one, since a
    half-open connection delivers nothing and raises nothing."""

    def __init__(
        self,
        database_url: str,
        *,
        operation_timeout: float,
        probe_after: float,
        wake: Callable[[], None],
        on_breaking_migration: Callable[[Any], None],
    ) -> None:
        self.database_url = database_url
        self.operation_timeout = operation_timeout
        self.probe_after = probe_after
        self.wake = wake
        self.on_breaking_migration = on_breaking_migration

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, **db.connect_options(self.database_url)
                )
                try:
                    async with asyncio.timeout(self.operation_timeout):
                        # jobs:insert last: tests (and people) find the connection by its last statement.
                        await conn.execute(f'listen "{MIGRATE_CHANNEL}"')
                        await conn.execute(f'listen "{CHANNEL}"')
                    backoff.reset()
                    self.wake()  # anything sent while we were not listening is found by this claim
                    while True:
                        async for notify in conn.notifies(timeout=self.probe_after):
                            self._on_notify(notify.channel, notify.payload)
                        # Quiet for a while: make sure the server still answers.
                        async with asyncio.timeout(self.operation_timeout):
                            await conn.execute("select 1")
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                reason = "no answer" if isinstance(exc, TimeoutError) else errors.describe(exc)
                pause = backoff.next()
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", reason, pause)
                await asyncio.sleep(pause)

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel != MIGRATE_CHANNEL:
            self.wake()
            return
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("breaking"):
            self.on_breaking_migration(message.get("migrationNumber"))
