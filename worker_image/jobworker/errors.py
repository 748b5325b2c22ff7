"""Errors raised by jobworker.

The tree, so callers can catch at the depth they act on::

    JobworkerError
    ├── ConfigurationError          bad option, env var or schedule; fix the input
    ├── DatabaseError               PostgreSQL unreachable or refused a statement
    │   ├── DatabaseUnreachableError  no connection, or it dropped or stopped answering: retry later
    │   ├── SchemaTooNewError       the database has a breaking migration this version does not know
    │   └── SchemaTooOldError       the database is at a graphile-worker migration jobworker cannot upgrade from
    ├── InvalidPayloadError         a payload failed validation; permanent, never retried
    ├── UnknownTaskError            no job definition with that name in the registry
    ├── JobsNotConfiguredError      the noop provider: status 409, code jobs.not_configured
    └── InvalidJobSignatureError    a QStash delivery failed verification: status 401

Handlers steer retries with two exceptions that are not errors of jobworker itself:
``PermanentJobError`` (fail now, no retry) and ``RetryJob(delay=)`` (retry after ``delay``).
"""

from __future__ import annotations

from datetime import timedelta


class JobworkerError(Exception):
    """A jobworker operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(JobworkerError):
    """The configuration is invalid."""


class DatabaseError(JobworkerError):
    """The database could not be reached or refused the statement."""


class DatabaseUnreachableError(DatabaseError):
    """The database could not be reached, or the connection dropped or stopped answering; retry later.

    The other ``DatabaseError``s mean PostgreSQL answered and refused the statement: retrying the same
    statement gets the same answer. Loops that wait out outages (the worker, the scheduler) tell the two apart.
    """


class SchemaTooNewError(DatabaseError):
    """The database schema has a breaking migration newer than this jobworker knows; upgrade jobworker."""


class SchemaTooOldError(DatabaseError):
    """The database schema is at a graphile-worker migration older than jobworker can upgrade from."""


class InvalidPayloadError(JobworkerError):
    """Invalid job payload."""


class UnknownTaskError(JobworkerError):
    """No job is defined under that name."""


class JobsNotConfiguredError(JobworkerError):
    """Background jobs are not configured (JOBS_PROVIDER is unset or noop)."""

    status = 409
    code = "jobs.not_configured"


class InvalidJobSignatureError(JobworkerError):
    """The delivery's signature is missing or invalid."""

    status = 401
    code = "jobs.invalid_signature"


class PermanentJobError(Exception):
    """Raised by a handler to fail its job now, without further attempts."""


class RetryJob(Exception):
    """Raised by a handler to retry its job after ``delay`` instead of the exponential backoff."""

    def __init__(self, delay: timedelta | float = 0, message: str = "retry requested") -> None:
        self.delay = delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
        super().__init__(message)


def describe(exc: BaseException) -> str:
    """``exc`` as text for a log line, a job's ``last_error`` or an HTTP body: the one helper for this.

    A PostgreSQL error gives the server's primary message (later lines are hints or a ``^`` pointer), else
    its first line; anything else ``Type: message`` (what a job's ``last_error`` has always held), or the
    bare type name when the message is empty (``TimeoutError()``, ``KeyboardInterrupt``). The CLI's one error
    line is ``str(exc)`` of a ``JobworkerError`` instead: its message is written to be read on its own.
    """
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return str(primary)
    text = str(exc)
    if diag is not None:  # a psycopg error without a server message: its first line
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
