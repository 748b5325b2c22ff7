"""The one seam to PostgreSQL: connecting, and turning psycopg errors into jobworker errors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from jobworker import errors

DEFAULT_SCHEMA = "graphile_worker"
_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def resolve_database_url(explicit: str | None = None, *, worker: bool = False) -> str:
    """The URL from the argument, else WORKER_DATABASE_URL (for workers), else DATABASE_URL.

    Workers get their own variable because LISTEN needs a session, which transaction poolers
    (PgBouncer in transaction mode) cannot give; point WORKER_DATABASE_URL past the pooler.
    """
    url = explicit or (os.environ.get("WORKER_DATABASE_URL") if worker else None) or os.environ.get("DATABASE_URL")
    if not url:
        raise errors.ConfigurationError(
            "no database URL: pass --database-url or set DATABASE_URL (workers also read WORKER_DATABASE_URL)"
        )
    if not (url.startswith(("postgres://", "postgresql://")) or "=" in url):
        raise errors.ConfigurationError("database URL must start with postgresql:// (or be a libpq 'key=value' string)")
    return url


def resolve_schema(explicit: str | None = None) -> str:
    schema = explicit or os.environ.get("JOBWORKER_SCHEMA") or DEFAULT_SCHEMA
    if not _SCHEMA_RE.match(schema):
        raise errors.ConfigurationError(
            f"schema: {schema!r} is not a plain PostgreSQL identifier (letters, digits, _ and $; at most 63)"
        )
    return schema


def describe(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    text = primary or str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


@contextlib.contextmanager
def wrap_exceptions() -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise errors.DatabaseError(f"cannot reach the database: {_one_line(exc)}") from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise errors.DatabaseError(
            f"database error: {_one_line(exc)} (is the schema installed? run `jobworker migrate`)"
        ) from exc
    except psycopg.Error as exc:
        raise errors.DatabaseError(f"database error: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    """The server's primary message, else the first line: later lines are hints or a ``^`` pointer."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return str(primary)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


async def connect(url: str, *, autocommit: bool = True, **kwargs: Any) -> psycopg.AsyncConnection[dict[str, Any]]:
    with wrap_exceptions():
        return await psycopg.AsyncConnection.connect(url, autocommit=autocommit, row_factory=dict_row, **kwargs)


@contextlib.asynccontextmanager
async def connection(url: str, *, autocommit: bool = True) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    conn = await connect(url, autocommit=autocommit)
    try:
        yield conn
    finally:
        await conn.close()
