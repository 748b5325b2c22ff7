"""Reads a graphile pool's queue statistics: from its database through the runtime's ``JobStore``, or
from its workers' ``/metrics`` (``queueStats.source: workers``).

The contract with the runtime is typed: a reading is a ``jobworker.models.QueueStats`` plus the
schema version; tests pass their own ``Reader``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from jobworker import db, errors, models
from jobworker.store import JobStore
from jobworker.worker_utils import STALE_AFTER
from jobworker_operator import metrics, names
from jobworker_operator.apply import Api, ApiError
from jobworker_operator.model import Pool

Reader = Callable[[str, str], Awaitable[models.QueueStats]]
"""(database_url, schema) -> the pool's queue statistics (docs/contracts.md)."""
TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5


class QueueStatsError(Exception):
    """The queue could not be read; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class Reading:
    stats: models.QueueStats
    schema_version: int | None
    """The highest migration id in the shared ``migrations`` table (``status.schemaVersion``); None: unknown."""


async def worker_utils_reader(database_url: str, schema: str) -> models.QueueStats:
    """The queue statistics through the runtime's store, bounded to the ``TOP_QUEUES`` fullest named queues."""
    async with JobStore(database_url, schema) as store:
        return await store.queue_stats(stale_after=STALE_AFTER, top_queues=metrics.TOP_QUEUES)


async def schema_version(database_url: str, schema: str) -> int | None:
    """Highest applied migration id (graphile's ``<schema>.migrations``); None when not readable."""
    store = JobStore(database_url, schema, connect_options={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    try:
        async with store:
            return await store.latest_migration()
    except errors.DatabaseError:
        return None


# Every secret part of every database URL read so far: the operator's log handlers mask them all
# (see __main__), whoever logs them (kopf included).
SEEN_SECRETS: set[str] = set()


def redact(text: str, url: str = "") -> str:
    """``text`` without ``url``'s password and other secret parts (libpq errors echo their input)."""
    return db.redact(text, db.secret_parts(url) if url else ())


def install_log_redaction() -> None:
    """Mask every seen secret on the root handlers and, before kopf's event poster (a handler of its own
    logger) turns a record into a Kubernetes Event, on the ``kopf.objects`` logger itself."""
    db.install_log_redaction(lambda: tuple(SEEN_SECRETS))
    logging.getLogger("kopf.objects").addFilter(db.RedactingFilter(lambda: tuple(SEEN_SECRETS)))


async def read_from_workers(api: Api, pool: Pool) -> Reading:
    """The no-Secrets mode: ask a ready worker of the pool for its queue reading (``/metrics?queue_stats=1``).

    The operator then needs only list on EndpointSlices and a network path to the workers' metrics port.
    Without a running worker (scaled to 0, draining for a breaking migration) there is no reading.
    """
    service = names.metrics_service(pool.name)
    if not pool.metrics.enabled:
        raise QueueStatsError(
            "queue statistics come from the workers' metrics (queueStats.source workers): "
            "set spec.metrics.enabled to true"
        )
    try:
        slices = await api.list(
            "discovery.k8s.io/v1", "EndpointSlice", pool.namespace, f"kubernetes.io/service-name={service}"
        )
    except ApiError as exc:
        raise QueueStatsError(f"cannot list the endpoints of Service {service}: {exc}") from exc
    addresses = [
        address
        for piece in slices
        for endpoint in piece.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready") is not False
        for address in endpoint.get("addresses") or []
    ]
    if not addresses:
        raise QueueStatsError(f"no ready worker behind Service {service} to read queue statistics from")
    problems = []
    for address in addresses[:3]:
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{pool.metrics.port}/metrics?queue_stats=1"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session,
                session.get(url) as resp,
            ):
                text = await resp.text()
                if resp.status != 200:
                    problems.append(f"{address}: HTTP {resp.status} {text.strip()[:200]}")
                    continue
        except (aiohttp.ClientError, OSError) as exc:
            problems.append(f"{address}: {exc or type(exc).__name__}")
            continue
        return parse_worker_reading(text)
    raise QueueStatsError(f"no worker of Service {service} answered with queue statistics: {'; '.join(problems)}")


def parse_worker_reading(text: str) -> Reading:
    """A worker's ``jobworker_queue_reading_*`` series (jobworker.httpserver) as a QueueStats reading."""
    from jobworker.models import LockHolder, QueueStats, TaskQueueStats

    rows: list[TaskQueueStats] = []
    holder_fields: dict[int, dict[str, float]] = {}  # rank -> jobs, newest_lock_seconds, oldest_lock_seconds
    totals = {"ready": 0, "scheduled": 0, "locked": 0, "failed": 0}
    single: dict[str, float] = {}
    workers: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jobworker_queue_reading_jobs":
                labels, count = sample.labels, int(sample.value)
                rows.append(TaskQueueStats(labels["task"], labels["queue"] or None, labels["state"], count))
                totals[labels["state"]] = totals.get(labels["state"], 0) + count
            elif sample.name == "jobworker_queue_reading_workers":
                workers[sample.labels["state"]] = int(sample.value)
            elif sample.name.startswith("jobworker_queue_reading_lock_holder_"):
                field = sample.name.removeprefix("jobworker_queue_reading_lock_holder_")
                holder_fields.setdefault(int(sample.labels["rank"]), {})[field] = sample.value
            elif sample.name.startswith("jobworker_queue_reading_"):
                single[sample.name] = sample.value
    if "jobworker_queue_reading_schema_version" not in single:
        raise QueueStatsError(
            "the worker's /metrics has no queue reading: its image predates queueStats.source workers"
        )
    oldest = single.get("jobworker_queue_reading_oldest_ready_seconds", math.nan)
    version = single["jobworker_queue_reading_schema_version"]
    total = single.get("jobworker_queue_reading_lock_holders")  # absent: a worker image without lock ages
    holders = [
        LockHolder(int(f.get("jobs", 0)), f.get("newest_lock_seconds", 0.0), f.get("oldest_lock_seconds", 0.0))
        for _, f in sorted(holder_fields.items())
    ]
    stats = QueueStats(
        ready=totals["ready"],
        scheduled=totals["scheduled"],
        locked=totals["locked"],
        failed=totals["failed"],
        oldest_ready_seconds=None if math.isnan(oldest) else oldest,
        by_task=rows,
        workers_active=workers.get("active", 0),
        workers_stale=workers.get("stale", 0),
        lock_holders=None if total is None else holders,
        lock_holders_total=0 if total is None else int(total),
    )
    return Reading(stats, None if math.isnan(version) else int(version))


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
