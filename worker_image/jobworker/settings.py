"""Worker options. Each default is written here once; docs and the CLI read them from these fields.

The env form of a field is ``JOBWORKER_<FIELD>``; ``concurrency`` also reads ``JOBS_CONCURRENCY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from jobworker import errors
from jobworker.durations import parse_duration


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    concurrency: int = 2
    """Jobs run at once by one worker process."""
    poll_interval: float = 2.0
    """Seconds between polls for future run_at and retries; new jobs arrive by LISTEN/NOTIFY."""
    queues: tuple[str, ...] | None = None
    """Only claim jobs in these named queues (default: every job, queued or not)."""
    forbidden_flags: tuple[str, ...] | None = None
    """Never claim jobs carrying any of these flags."""
    batch: bool = False
    """Claim ahead into a local queue and complete in batches (graphile's localQueue): faster, but
    claimed jobs wait locked in this process; a crash leaves them for the stale-worker sweep."""
    batch_size: int = 500
    """Jobs claimed ahead in batch mode."""
    complete_delay: float = 0.002
    """Seconds to gather completions into one statement in batch mode."""
    graceful_shutdown: float = 30.0
    """Seconds running jobs get after SIGTERM before they are returned to the queue."""
    heartbeat_interval: float = 15.0
    """Seconds between heartbeats into _private_workers. Recorded at registration: the sweep skips a
    worker whose sweep threshold is under 3x its interval, so a live worker is never taken for dead."""
    sweep_threshold: float = 300.0
    """Heartbeat age after which the stale-worker sweep recovers a worker's jobs (its --sweep-threshold).
    A worker whose heartbeat has failed for half of it fires ctx.signal, stops claiming and writes no
    result of the jobs it was running: the sweep may already have handed them to another worker."""
    job_timeout: float | None = None
    """Seconds a job may run before its ctx.signal fires (define_job(timeout=) overrides it per task); after
    ``timeout_grace`` more the attempt fails with a JobTimeout error and its slot is freed. A sync handler's
    thread cannot be stopped: it runs on until it returns, its result is discarded, and /healthz reports
    unhealthy while such threads fill every slot. Default: no limit."""
    timeout_grace: float = 5.0
    """Seconds a timed-out job gets to honour ctx.signal before its attempt is failed."""
    max_loop_lag: float = 5.0
    """Event-loop lag (seconds) above which /healthz reports unhealthy for the next 30 s: a handler blocking
    the loop stops claims, heartbeats and results alike."""
    worker_id: str | None = None
    """Lock owner id; default ``jobworker-<host>-<pid>-<random>``."""
    http_port: int | None = None
    """Port for /healthz and /metrics; off when unset."""

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise errors.ConfigurationError(f"concurrency: {self.concurrency!r} must be an integer of at least 1")
        if self.batch_size < 1:
            raise errors.ConfigurationError("batch_size: must be at least 1")
        if self.poll_interval <= 0:
            raise errors.ConfigurationError("poll_interval: must be greater than 0")
        if self.job_timeout is not None and self.job_timeout <= 0:
            raise errors.ConfigurationError("job_timeout: must be greater than 0 (or unset for no limit)")
        if self.heartbeat_interval <= 0:
            raise errors.ConfigurationError("heartbeat_interval: must be greater than 0")
        if self.sweep_threshold < 3 * self.heartbeat_interval:
            raise errors.ConfigurationError(
                f"sweep_threshold: {self.sweep_threshold:g}s is under 3x heartbeat_interval "
                f"({self.heartbeat_interval:g}s), so the sweep could take this live worker for dead; "
                f"raise it to at least {3 * self.heartbeat_interval:g}s or heartbeat more often"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        """Defaults, then env vars, then explicit overrides (CLI flags); None overrides are ignored."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"JOBWORKER_{f.name.upper()}")
            if f.name == "concurrency" and raw is None:
                raw = env.get("JOBS_CONCURRENCY")
            if raw is not None:
                values[f.name] = _coerce(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> WorkerSettings:
        return replace(self, **changes)


def _coerce(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if "tuple" in kind:
            return tuple(p.strip() for p in raw.split(",") if p.strip()) or None
        if "bool" in kind:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if "float" in kind:
            return parse_duration(raw, field=name).total_seconds()
        if "int" in kind:
            return int(raw)
        return raw
    except ValueError:
        raise errors.ConfigurationError(f"JOBWORKER_{name.upper()}: {raw!r} is not a valid {kind}") from None


@dataclass(frozen=True, kw_only=True)
class ConnectionSettings:
    """Timeouts of every database connection (worker pool, LISTEN, WorkerUtils, scheduler, operator reader).

    Without them a half-open TCP connection (a partition, a NAT that forgot it, a frozen server) hangs a
    claim for about 15 minutes and LISTEN for ever. Env: ``JOBWORKER_<FIELD>``; a value given in the
    database URL itself (``?connect_timeout=5``) wins.
    """

    connect_timeout: float = 10.0
    """Seconds to establish a connection (libpq connect_timeout)."""
    tcp_keepalives_idle: float = 30.0
    """Seconds of silence before TCP keepalive probes start; then every 10 s, and 3 unanswered probes drop it."""
    tcp_user_timeout: float = 30.0
    """Seconds sent data may stay unacknowledged before the kernel drops the connection (libpq tcp_user_timeout)."""
    operation_timeout: float = 60.0
    """Seconds a worker's statement (claim, result write, heartbeat, LISTEN check) may take before the worker
    gives up on that connection and retries on a new one: the bound for a peer that accepts bytes but never
    answers, which TCP cannot see. psycopg then spends up to 5 s more trying to cancel it."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise errors.ConfigurationError(f"{f.name} (JOBWORKER_{f.name.upper()}): must be greater than 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConnectionSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"JOBWORKER_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.name, raw, f.type)
        return cls(**values)

    def libpq(self) -> dict[str, Any]:
        """The libpq connection parameters for these settings."""
        return {
            "connect_timeout": max(2, round(self.connect_timeout)),  # libpq: whole seconds, 2 at least
            "keepalives": 1,
            "keepalives_idle": max(1, round(self.tcp_keepalives_idle)),
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": round(self.tcp_user_timeout * 1000),
        }


@dataclass(frozen=True, kw_only=True)
class EndpointSettings:
    """Options of the QStash job endpoint (``jobworker serve``, ``create_app``, ``asgi_app``).

    Env: ``JOBWORKER_<FIELD>``; a ``jobworker serve`` flag of the same name wins.
    """

    host: str = "0.0.0.0"
    """Address ``jobworker serve`` listens on."""
    port: int = 8080
    """Port ``jobworker serve`` listens on; 0 picks a free one (logged at start)."""
    max_body_bytes: int = 1024 * 1024
    """Largest body accepted; a larger one is answered 489 (QStash does not retry it)."""
    max_concurrency: int = 64
    """Deliveries handled at once by one process, handlers included; the next gets 503 with Retry-After."""
    body_timeout: float = 30.0
    """Seconds a signed request gets to send its body (408 after that)."""
    replay_database_url: str | None = None
    """PostgreSQL URL of the table in which every replica records the signatures it ran
    (_private_jobworker_seen_signatures, created by ``jobworker migrate``), so a delivery replayed to another
    replica is refused. Unset: each process remembers its own, enough for one replica. Never derived from
    DATABASE_URL; set it to the same value to share that database. While it is unreachable, deliveries get
    503 and are not run."""
    replay_timeout: float = 5.0
    """Seconds recording a signature in the replay database may take before the delivery gets 503."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise errors.ConfigurationError(f"port (JOBWORKER_PORT): {self.port!r} must be 0..65535")
        for name in ("max_body_bytes", "max_concurrency"):
            if getattr(self, name) < 1:
                raise errors.ConfigurationError(f"{name} (JOBWORKER_{name.upper()}): must be at least 1")
        for name in ("body_timeout", "replay_timeout"):
            if getattr(self, name) <= 0:
                raise errors.ConfigurationError(f"{name} (JOBWORKER_{name.upper()}): must be greater than 0 seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EndpointSettings:
        """Defaults, then env vars, then explicit overrides (CLI flags); None overrides are ignored."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"JOBWORKER_{f.name.upper()}", "").strip()
            if raw:
                values[f.name] = _coerce(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
