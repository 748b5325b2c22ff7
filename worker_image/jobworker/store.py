"""JobStore: the one way the runtime talks to PostgreSQL.

It owns the connections and the reconnect policy, turns psycopg errors into jobworker errors
(``wrap_exceptions``), runs the named queries of ``jobworker.queries`` and hands back their rows as
frozen dataclasses or NamedTuples. ``Worker``, ``WorkerUtils``, ``Scheduler``, ``migrate``, the dashboard,
the endpoint's replay table and the operator's stats reader go through it; only LISTEN keeps a session
of its own (it waits on the socket, not on a query).

Two ways to hold connections, one policy:

- without ``pool``: one session, opened on first use and shared by one statement at a time
  (``WorkerUtils``, the scheduler, the operator's reader, migrations);
- with ``pool``: a psycopg_pool for concurrent callers (the worker, the dashboard). The worker's pool
  gives up reconnecting at once while the server is down (``reconnect_timeout=0``) and a statement
  waits ``wait`` seconds at most for a connection, so its loops retry every second or so
  (``backoff.MAX_BACKOFF``) and resume about a second after the server is back.

Either way, a statement whose connection dropped before the reply (a restart, a killed backend) is run
once more on a new connection when its ``Query.retry`` allows it; otherwise the caller gets
``DatabaseUnreachableError`` and decides. Every connection gets the timeouts and TCP keepalives of
``settings.ConnectionSettings`` (``db.connect_options``) unless the URL sets them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.rows import RowMaker

from jobworker import db, errors, queries, sql
from jobworker.models import LOCK_HOLDERS, LockHolder, QueueStats, TaskQueueStats
from jobworker.queries import NoRow, Query

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance | tuple[Any, ...]")
Params = Mapping[str, object]
"""Query parameters by name (``%(name)s`` in the SQL)."""
AsyncConn = psycopg.AsyncConnection[Any]
STATES = ("ready", "scheduled", "locked", "failed")
OTHER_QUEUES = "other"
"""The queue name under which ``queue_stats(top_queues=N)`` counts every queue beyond the N fullest."""


# -- errors ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def wrap_exceptions() -> Iterator[None]:
    """psycopg errors as jobworker errors, with the psycopg error as ``__cause__``: the one mapping."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise errors.DatabaseUnreachableError(f"cannot reach the database: {errors.describe(exc)}") from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise errors.DatabaseError(
            f"database error: {errors.describe(exc)} (is the schema installed? run `jobworker migrate`)"
        ) from exc
    except psycopg.Error as exc:
        raise errors.DatabaseError(f"database error: {errors.describe(exc)}") from exc


def refused(exc: BaseException) -> bool:
    """True when PostgreSQL answered and refused the data (bad value, constraint): retrying cannot help."""
    cause = exc.__cause__ if isinstance(exc, errors.DatabaseError) else exc
    return isinstance(cause, psycopg.DataError | psycopg.ProgrammingError | psycopg.IntegrityError)


# -- rows -----------------------------------------------------------------------------------------
def _numeric(kind: type) -> Callable[[object], object]:
    # extract(epoch ...) and numeric columns arrive as Decimal; the row types say float or int.
    return lambda value: kind(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True)
class _Shape:
    fields: tuple[str, ...]
    required: frozenset[str]
    convert: dict[str, Callable[[object], object]]
    positional: Callable[[Sequence[Any]], Any]
    """Builds a row from values in field order: ``_make`` for a NamedTuple (no per-field __init__)."""


_SHAPES: dict[type, _Shape] = {}


def _shape(row: type) -> _Shape:
    """A row type's fields in order, those without a default, and the numeric conversions by field."""
    if row not in _SHAPES:
        _SHAPES[row] = _read_shape(row)
    return _SHAPES[row]


def _read_shape(row: type) -> _Shape:
    hints = typing.get_type_hints(row)
    named_tuple = issubclass(row, tuple)
    if named_tuple:
        names: tuple[str, ...] = row._fields  # type: ignore[attr-defined]
        required = frozenset(names) - set(row._field_defaults)  # type: ignore[attr-defined]
        positional: Callable[[Sequence[Any]], Any] = row._make  # type: ignore[attr-defined]
    else:
        names = tuple(f.name for f in fields(row))
        required = frozenset(f.name for f in fields(row) if f.default is MISSING and f.default_factory is MISSING)
        positional = lambda values: row(*values)  # noqa: E731
    convert: dict[str, Callable[[object], object]] = {}
    for name in names:
        options = typing.get_args(hints[name]) or (hints[name],)
        if float in options:
            convert[name] = _numeric(float)
        elif int in options:
            convert[name] = _numeric(int)
    return _Shape(names, required, convert, positional)


def _row_factory(query: Query[R]) -> Callable[[Any], RowMaker[R]]:
    """A psycopg row factory building ``query.row``; checks the columns against the fields once per result."""

    def factory(cursor: Any) -> RowMaker[R]:
        row = query.row
        names = tuple(column.name for column in cursor.description or ())
        if row is NoRow:
            return lambda values: row()
        shape = _shape(row)
        if not set(shape.fields).issuperset(names) or not shape.required.issubset(names):
            raise RuntimeError(
                f"query {query.name}: columns {sorted(names)} do not match the fields of {row.__name__} "
                f"{sorted(shape.fields)}; change the row type in jobworker/queries.py with the SQL"
            )
        converters = [shape.convert.get(n) for n in names]
        if not any(converters):
            if names == shape.fields:
                return shape.positional  # the common case, and the cheapest: no dict, no conversion
            return lambda values: row(**dict(zip(names, values, strict=True)))

        def make(values: Sequence[Any]) -> R:
            converted = [c(v) if c else v for c, v in zip(converters, values, strict=True)]
            if names == shape.fields:
                return shape.positional(converted)  # type: ignore[no-any-return]
            return row(**dict(zip(names, converted, strict=True)))

        return make

    return factory


# -- the store ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PoolOptions:
    """A connection pool for concurrent callers; see the module docstring for the policy."""

    min_size: int = 1
    max_size: int = 4
    wait: float = 30.0
    """Seconds a statement waits for a free connection (psycopg_pool's ``timeout``)."""
    reconnect_timeout: float = 300.0
    """Seconds the pool keeps trying to replace a connection before it gives up (0: give up at once)."""
    open_timeout: float = 30.0
    """Seconds ``open()`` waits for the first ``min_size`` connections."""
    prepare_threshold: int | None = 5
    """psycopg's: prepare a statement on its N-th run (0: the first); None never prepares."""


class Transaction:
    """Named queries on one connection inside one transaction (``JobStore.transaction()``)."""

    def __init__(self, store: JobStore, connection: AsyncConn) -> None:
        self._store = store
        self._conn = connection

    async def all(self, query: Query[R], params: Params | None = None) -> list[R]:
        with wrap_exceptions():
            return await self._store._fetch(self._conn, query, params)

    async def one(self, query: Query[R], params: Params | None = None) -> R | None:
        rows = await self.all(query, params)
        return rows[0] if rows else None

    async def execute(self, query: Query[Any], params: Params | None = None) -> None:
        await self.all(query, params)

    async def run_migration(self, text: str) -> None:
        """One migration file's text (``sql.migration_files()``), with the schema filled in."""
        with wrap_exceptions():
            await self._conn.execute(sql.render(text, self._store.schema))


class JobStore:
    """The connections, the named queries and their typed rows.

    ``async with JobStore(url, schema) as store: jobs = await store.all(queries.LIST_JOBS, {...})``.
    Nothing connects before the first statement (or ``open()``); ``close()`` closes every connection.
    """

    def __init__(
        self,
        database_url: str,
        schema: str = db.DEFAULT_SCHEMA,
        *,
        pool: PoolOptions | None = None,
        read_only: bool = False,
        operation_timeout: float | None = None,
        connect_options: Mapping[str, str | int] | None = None,
    ) -> None:
        self.database_url = database_url
        self.schema = db.resolve_schema(schema)
        self.pool_options = pool
        self.read_only = read_only
        """Sessions run with ``default_transaction_read_only``: a statement can never write."""
        self.operation_timeout = operation_timeout
        """Seconds one statement may take, connection wait included, before its connection is given up
        for dead (a peer that takes bytes but never answers; TCP cannot see it). None: no bound."""
        self._connect_options = dict(connect_options or {})
        self._pool: psycopg_pool.AsyncConnectionPool[AsyncConn] | None = None
        self._pool_lock = asyncio.Lock()
        self._session: AsyncConn | None = None
        self._session_lock = asyncio.Lock()
        self._closed = False
        self.statements = 0
        """Statements sent so far (the dashboard's bench reads it to show what many tabs cost)."""

    async def __aenter__(self) -> JobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (a session store still reconnects if used again; a pool does not)."""
        return self._closed

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True, **db.connect_options(self.database_url)}
        kwargs.update(self._connect_options)
        if self.read_only:
            kwargs["options"] = "-c default_transaction_read_only=on"
        return kwargs

    async def _connect(self) -> AsyncConn:
        with wrap_exceptions():
            return await psycopg.AsyncConnection.connect(self.database_url, **self._kwargs())

    async def open(self) -> None:
        """Connect now (the pool: its first ``min_size`` connections), so a bad URL fails here."""
        if self.pool_options is None:
            async with self._session_lock:
                await self._current_session()
        else:
            await self._opened_pool()

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            await self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _opened_pool(self) -> psycopg_pool.AsyncConnectionPool[AsyncConn]:
        options = self.pool_options
        assert options is not None
        async with self._pool_lock:
            if self._pool is None:
                kwargs = {**self._kwargs(), "prepare_threshold": options.prepare_threshold}
                pool: psycopg_pool.AsyncConnectionPool[AsyncConn] = psycopg_pool.AsyncConnectionPool(
                    self.database_url,
                    min_size=options.min_size,
                    max_size=options.max_size,
                    kwargs=kwargs,
                    open=False,
                    timeout=options.wait,
                    reconnect_timeout=options.reconnect_timeout,
                )
                try:
                    with wrap_exceptions():
                        await pool.open(wait=True, timeout=options.open_timeout)
                except BaseException:
                    await pool.close()  # its background tasks would outlive us otherwise
                    raise
                self._pool = pool
            return self._pool

    async def _current_session(self) -> AsyncConn:
        if self._session is None or self._session.closed or self._session.broken:
            self._session = await self._connect()
        return self._session

    # -- running named queries --------------------------------------------------------------------
    async def _fetch(self, conn: AsyncConn, query: Query[R], params: Params | None) -> list[R]:
        self.statements += 1
        async with conn.cursor(row_factory=_row_factory(query)) as cur:
            await cur.execute(sql.query(query.name, self.schema), params)
            return await cur.fetchall() if cur.description else []

    async def _attempt(self, query: Query[R], params: Params | None) -> list[R]:
        """One try on one connection; a dropped connection surfaces as ``_Dropped``."""
        conn: AsyncConn | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.operation_timeout is not None:
                    await stack.enter_async_context(asyncio.timeout(self.operation_timeout))
                if self.pool_options is not None:
                    pool = await self._opened_pool()
                    conn = await stack.enter_async_context(pool.connection())
                else:
                    await stack.enter_async_context(self._session_lock)
                    conn = await self._current_session()
                return await self._fetch(conn, query, params)
        except psycopg_pool.PoolTimeout:
            raise  # no connection to be had: the server is down, or every connection is busy
        except psycopg.OperationalError as exc:
            if conn is not None and (conn.broken or conn.closed):
                raise _Dropped(exc) from exc
            raise
        except TimeoutError as exc:
            if self.operation_timeout is None:
                raise
            # The connection may still be inside the statement: never reuse it. The pool discards a
            # connection returned mid-statement; the session is closed here.
            if self.pool_options is None and conn is not None:
                await conn.close()
            raise errors.DatabaseUnreachableError(
                f"cannot reach the database: no answer within {self.operation_timeout:g}s (JOBWORKER_OPERATION_TIMEOUT)"
            ) from exc

    async def all(self, query: Query[R], params: Params | None = None) -> list[R]:
        """Every row of ``query``, as ``query.row`` instances."""
        with wrap_exceptions():
            try:
                return await self._attempt(query, params)
            except _Dropped as dropped:
                if not query.retry:
                    raise dropped.error from None
            # The server may have restarted since the last statement: one more try on a new connection.
            try:
                return await self._attempt(query, params)
            except _Dropped as dropped:
                raise dropped.error from None

    async def one(self, query: Query[R], params: Params | None = None) -> R | None:
        """The first row of ``query``, or None."""
        rows = await self.all(query, params)
        return rows[0] if rows else None

    async def execute(self, query: Query[Any], params: Params | None = None) -> None:
        """Run ``query`` for its effect."""
        await self.all(query, params)

    @contextlib.asynccontextmanager
    async def transaction(self, *, force_rollback: bool = False) -> AsyncIterator[Transaction]:
        """One transaction on a connection of its own (a pooled one, with a pool); never retried."""
        with wrap_exceptions():
            if self.pool_options is not None:
                pool = await self._opened_pool()
                async with pool.connection() as conn, conn.transaction(force_rollback=force_rollback):
                    yield Transaction(self, conn)
                return
            conn = await self._connect()
            try:
                async with conn.transaction(force_rollback=force_rollback):
                    yield Transaction(self, conn)
            finally:
                await conn.close()

    async def all_on(self, connection: AsyncConn, query: Query[R], params: Params | None = None) -> list[R]:
        """``query`` on the caller's own connection, inside whatever transaction it has open."""
        with wrap_exceptions():
            return await self._fetch(connection, query, params)

    def all_on_sync(
        self, connection: psycopg.Connection[Any], query: Query[R], params: Params | None = None
    ) -> list[R]:
        """As ``all_on``, on a synchronous connection (``SyncWorkerUtils.add_job(connection=...)``)."""
        self.statements += 1
        with wrap_exceptions(), connection.cursor(row_factory=_row_factory(query)) as cur:
            cur.execute(sql.query(query.name, self.schema), params)
            return cur.fetchall() if cur.description else []

    # -- the operator's contract ------------------------------------------------------------------
    async def queue_stats(self, *, stale_after: timedelta, top_queues: int | None = None) -> QueueStats:
        """Counts by task, queue and state. With ``top_queues``, only that many named queues (the fullest)
        keep their name and the rest count under ``OTHER_QUEUES``: bounded rows for per-entity queues."""
        if top_queues is None:
            rows = await self.all(queries.QUEUE_STATS)
        else:
            rows = await self.all(queries.QUEUE_STATS_TOP_QUEUES, {"top_queues": top_queues, "other": OTHER_QUEUES})
        totals = dict.fromkeys(STATES, 0)
        oldest: float | None = None
        for r in rows:
            totals[r.state] += r.count
            if r.state == "ready":
                oldest = max(oldest or 0.0, r.oldest_seconds, 0.0)
        workers = await self.one(queries.COUNT_WORKERS, {"threshold": stale_after.total_seconds()})
        # The autoscaler's floor: the pods that locked a job within the scale-down grace (operator plan.busy_pods).
        holders = await self.all(queries.LOCK_HOLDERS, {"limit": LOCK_HOLDERS})
        return QueueStats(
            ready=totals["ready"],
            scheduled=totals["scheduled"],
            locked=totals["locked"],
            failed=totals["failed"],
            oldest_ready_seconds=oldest,
            by_task=[TaskQueueStats(r.task_identifier, r.queue_name, r.state, r.count) for r in rows],
            workers_active=workers.active if workers else 0,
            workers_stale=workers.stale if workers else 0,
            lock_holders=[LockHolder(h.jobs, h.newest_lock_seconds, h.oldest_lock_seconds) for h in holders],
            lock_holders_total=holders[0].holders if holders else 0,
        )

    async def latest_migration(self) -> int | None:
        """The highest id in the shared ``migrations`` table, whoever applied it (the operator's
        ``status.schemaVersion``); None when the schema is not installed."""
        present = await self.one(queries.GRAPHILE_MIGRATIONS_PRESENT, {"schema": self.schema})
        if present is None or not present.present:
            return None
        latest = await self.one(queries.GRAPHILE_LATEST_MIGRATION)
        return latest.id if latest else None


class _Dropped(Exception):
    """The connection dropped under a statement (internal: ``all`` retries or re-raises ``error``)."""

    def __init__(self, error: psycopg.OperationalError) -> None:
        super().__init__(str(error))
        self.error = error
