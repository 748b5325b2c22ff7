"""Where to connect: the database URL and schema (resolved and checked), the libpq options every
connection gets, and keeping the URL's secrets out of every message and log line.

Connecting and running SQL is ``jobworker.store``'s job (only LISTEN keeps a session of its own).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import conninfo, pq

from jobworker import errors

DEFAULT_SCHEMA = "graphile_worker"
MIN_SECRET_LENGTH = 4
_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def resolve_database_url(explicit: str | None = None, *, worker: bool = False) -> str:
    """The URL from the argument, else WORKER_DATABASE_URL (for workers), else DATABASE_URL.

    Workers get their own variable because LISTEN needs a session, which transaction poolers
    (PgBouncer in transaction mode) cannot give; point WORKER_DATABASE_URL past the pooler.
    """
    candidates = [("--database-url", explicit), ("DATABASE_URL", os.environ.get("DATABASE_URL"))]
    if worker:
        candidates.insert(1, ("WORKER_DATABASE_URL", os.environ.get("WORKER_DATABASE_URL")))
    source, url = next(((name, value) for name, value in candidates if value), ("", None))
    if not url:
        raise errors.ConfigurationError(
            "no database URL: pass --database-url or set DATABASE_URL (workers also read WORKER_DATABASE_URL)"
        )
    if not (url.startswith(("postgres://", "postgresql://")) or "=" in url):
        raise errors.ConfigurationError(
            f"database URL must start with postgresql:// (or be a libpq 'key=value' string); check {source}"
        )
    return check_database_url(url, source)


def check_database_url(url: str, source: str) -> str:
    """``url`` if libpq can parse it; else one fixed sentence naming ``source``.

    libpq's own parse errors echo the input (``invalid connection option "<value>"``, ``invalid
    percent-encoded token: "<password>"``), so they are never shown.
    """
    if not _parses(url):
        raise errors.ConfigurationError(
            f"{source} is not a valid PostgreSQL connection string: expected postgresql://USER@HOST:5432/DBNAME "
            "with ':PASSWORD' after USER, its reserved characters percent-encoded (%40 for @, %25 for %, %3D for =)"
        )
    return url


def _parses(url: str) -> bool:
    try:
        conninfo.conninfo_to_dict(url)
        # libpq splits "user:p@ss@host" at the first "@"; its errors would then quote a "host" made of password.
        return "://" not in url or urllib.parse.urlsplit(url.strip()).netloc.count("@") <= 1
    except (psycopg.Error, ValueError):
        return False


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


def secret_parts(url: str) -> frozenset[str]:
    """The pieces of a connection string that must never be shown, decoded and not.

    The whole value, the password (as written and percent-decoded), and for a string libpq cannot
    parse, every piece its error message could echo (unknown option names, words without ``=``).
    Redacting by these known values catches what a pattern would miss (a password with ``@``, ``=``
    or a bad ``%xx`` in it).
    """
    parts = {url, url.strip()}
    try:
        params: dict[str, Any] = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        params = {}
    if params.get("password"):
        parts.add(str(params["password"]))
    if "://" in url:
        split = urllib.parse.urlsplit(url.strip())
        userinfo = split.netloc.rpartition("@")[0]
        password = userinfo.partition(":")[2]
        if password:  # a user name alone is no secret
            parts |= {userinfo, urllib.parse.unquote(userinfo), password, urllib.parse.unquote(password)}
        for key, value in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            if key.lower() == "password" or key not in _libpq_keywords():
                parts |= {key, value}
    else:
        for token in url.split():
            key, eq, value = token.partition("=")
            if not eq:
                parts.add(token)
            elif key not in _libpq_keywords():
                parts |= {token, key}
            elif key == "password":
                parts |= {value, value.strip("'")}
    # Shorter pieces would mask every occurrence of a common letter pair; the patterns of redact() remain.
    return frozenset(p for p in parts if len(p.strip()) >= MIN_SECRET_LENGTH)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret (see ``secret_parts``) and any ``user:pass@`` or ``password=`` masked."""
    variants = {v for s in secrets for v in (s, repr(s)[1:-1], urllib.parse.quote(s, safe=""))}
    for secret in sorted(variants, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)
    # ?password=... in a URL, and password=... in a libpq key/value string (quoted or not)
    return re.sub(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]+)", r"\1***", text)


class RedactingFilter(logging.Filter):
    """Masks the secrets ``secrets()`` returns in every record a handler emits (set on handlers, so
    records of libraries such as psycopg_pool are covered too)."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        known = list(self.secrets())
        message = record.getMessage()
        cleaned = redact(message, known)
        if record.exc_info and record.exc_info[1] is not None:
            cleaned += "\n" + redact(logging.Formatter().formatException(record.exc_info), known)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, known)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(secrets: Callable[[], Iterable[str]]) -> None:
    """Put a ``RedactingFilter`` on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(secrets))


def resolve_schema(explicit: str | None = None) -> str:
    schema = explicit or os.environ.get("JOBWORKER_SCHEMA") or DEFAULT_SCHEMA
    if not _SCHEMA_RE.match(schema):
        raise errors.ConfigurationError(
            f"schema: {schema!r} is not a plain PostgreSQL identifier (letters, digits, _ and $; at most 63)"
        )
    return schema


def connect_options(url: str) -> dict[str, Any]:
    """Timeouts and TCP keepalives for a connection to ``url`` (see settings.ConnectionSettings); a
    parameter the URL sets itself is left to the URL."""
    from jobworker.settings import ConnectionSettings

    given = conninfo.conninfo_to_dict(url)
    return {k: v for k, v in ConnectionSettings.from_env().libpq().items() if k not in given}
