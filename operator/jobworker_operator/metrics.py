"""Every metric the operator exports on its own /metrics (port 9000 by default)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from jobworker import worker_utils
from jobworker.worker_utils import OTHER_QUEUES

POOL_LABELS = ("namespace", "pool")

QUEUE_JOBS = Gauge(
    "jobworker_queue_jobs",
    "Jobs in the pool's queue by task, queue and state.",
    [*POOL_LABELS, "task", "queue", "state"],
)
OLDEST_READY = Gauge("jobworker_queue_oldest_ready_seconds", "Age of the oldest job ready to run.", POOL_LABELS)
WORKERS_ACTIVE = Gauge("jobworker_workers_active", "Workers with a recent heartbeat.", POOL_LABELS)
WORKERS_STALE = Gauge("jobworker_workers_stale", "Workers whose heartbeat is older than 5 minutes.", POOL_LABELS)
POOL_CONDITION = Gauge(
    "jobworker_pool_condition", "1 while the pool's condition is True, else 0.", [*POOL_LABELS, "condition"]
)
POOL_REPLICAS = Gauge("jobworker_pool_replicas", "Ready worker replicas of the pool.", POOL_LABELS)
POOL_DESIRED_REPLICAS = Gauge("jobworker_pool_desired_replicas", "Worker replicas the pool asks for.", POOL_LABELS)
RECONCILE = Counter("jobworker_pool_reconcile", "Reconciliations of a JobWorkerPool.", POOL_LABELS)
RECONCILE_ERRORS = Counter("jobworker_pool_reconcile_errors", "Reconciliations that failed.", POOL_LABELS)

# Label sets of QUEUE_JOBS per pool, so that a task/queue/state that vanished stops being exported.
_series: dict[tuple[str, str], set[tuple[str, str, str]]] = {}


# At most this many named queues of one pool get their own series; the others are summed as queue "other"
# (one queue per entity is a common graphile pattern: 100k series per pool would exhaust the shared operator).
# The reader asks the database for the same cut (WorkerUtils.queue_stats(top_queues=...)).
TOP_QUEUES = worker_utils.TOP_QUEUES
# Tasks are capped the same way (a task per entity is rarer, but just as unbounded).
TOP_TASKS = 50
OTHER_TASKS = "other"


def _top(counts: dict[str, int], limit: int) -> set[str]:
    return {name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]}


def observe_queue(namespace: str, pool: str, stats: Any) -> None:
    """Export a ``QueueStats``-shaped reading (contracts.md), with bounded series: the ``TOP_QUEUES``
    fullest named queues and ``TOP_TASKS`` busiest tasks by name, the rest as ``other``."""
    current: set[tuple[str, str, str]] = set()
    totals: dict[tuple[str, str, str], int] = {}
    per_queue: dict[str, int] = {}
    per_task: dict[str, int] = {}
    for row in stats.by_task:
        if row.queue:
            per_queue[str(row.queue)] = per_queue.get(str(row.queue), 0) + int(row.count)
        per_task[str(row.task)] = per_task.get(str(row.task), 0) + int(row.count)
    queues, tasks = _top(per_queue, TOP_QUEUES), _top(per_task, TOP_TASKS)
    for row in stats.by_task:
        queue = str(row.queue or "")
        task = str(row.task)
        key = (
            task if task in tasks else OTHER_TASKS,
            queue if not queue or queue in queues else OTHER_QUEUES,
            str(row.state),
        )
        totals[key] = totals.get(key, 0) + int(row.count)
    for key, count in totals.items():
        QUEUE_JOBS.labels(namespace, pool, *key).set(count)
        current.add(key)
    for gone in _series.get((namespace, pool), set()) - current:
        QUEUE_JOBS.remove(namespace, pool, *gone)
    _series[(namespace, pool)] = current
    oldest = stats.oldest_ready_seconds
    OLDEST_READY.labels(namespace, pool).set(0.0 if oldest is None else float(oldest))
    WORKERS_ACTIVE.labels(namespace, pool).set(int(stats.workers_active))
    WORKERS_STALE.labels(namespace, pool).set(int(stats.workers_stale))


def observe_status(namespace: str, pool: str, doc: dict[str, Any]) -> None:
    """Export the conditions and replica counts of a status document, for the chart's alerts and dashboard."""
    for cond in doc.get("conditions") or []:
        POOL_CONDITION.labels(namespace, pool, str(cond.get("type"))).set(1 if cond.get("status") == "True" else 0)
    POOL_REPLICAS.labels(namespace, pool).set(int(doc.get("readyReplicas") or 0))
    POOL_DESIRED_REPLICAS.labels(namespace, pool).set(int(doc.get("desiredReplicas") or 0))


def forget(namespace: str, pool: str) -> None:
    """Drop every series of a deleted pool."""
    for key in _series.pop((namespace, pool), set()):
        QUEUE_JOBS.remove(namespace, pool, *key)
    for metric in (
        OLDEST_READY,
        WORKERS_ACTIVE,
        WORKERS_STALE,
        RECONCILE,
        RECONCILE_ERRORS,
        POOL_REPLICAS,
        POOL_DESIRED_REPLICAS,
    ):
        try:
            metric.remove(namespace, pool)
        except KeyError:
            pass
    for condition in ("Ready", "Migrated", "Progressing", "Degraded"):
        try:
            POOL_CONDITION.remove(namespace, pool, condition)
        except KeyError:
            pass
