"""Typed view of a ``JobWorkerPool`` with every default applied.

Defaults are written only here, or taken from the runtime where the runtime owns them (worker settings,
the sweep). ``crd.py`` maps them onto CRD fields and ``scripts/gen_crd.py`` writes them into
``crds/jobworkerpools.yaml`` (schema ``default:`` values and descriptions);
``tests/operator_unit/test_crd.py`` fails when that file is stale or disagrees with ``Pool.from_body``.
A field whose default the runtime applies itself (``workers.concurrency``, the options of a schedule
entry) has no default here or in the CRD: it is left out of the rendered args and files, so
``JOBS_CONCURRENCY`` in ``workers.env`` and ``define_job(max_attempts=…)`` still apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, cast

from jobworker import db, errors
from jobworker.durations import MAX_SECONDS, format_duration, parse_duration
from jobworker.settings import WorkerSettings
from jobworker.worker_utils import DEFAULT_RECOVERY_DELAY as RUNTIME_RECOVERY_DELAY
from jobworker.worker_utils import STALE_AFTER
from jobworker_operator import names

ProviderType = Literal["graphile", "qstash", "noop"]

DEFAULT_IMAGE_PULL_POLICY = "IfNotPresent"
DEFAULT_PROVIDER: ProviderType = "graphile"
DEFAULT_SECRET_KEY = "url"
DEFAULT_SCHEMA = db.DEFAULT_SCHEMA
DEFAULT_REPLICAS = 1
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
DEFAULT_POLL_INTERVAL = format_duration(timedelta(seconds=WorkerSettings.poll_interval))
DEFAULT_HEARTBEAT_INTERVAL = format_duration(timedelta(seconds=WorkerSettings.heartbeat_interval))
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = int(WorkerSettings.graceful_shutdown)
DEFAULT_MIN_REPLICAS = 1
DEFAULT_TARGET_JOBS_PER_REPLICA = 10
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 300
DEFAULT_SCHEDULER_ENABLED = True
DEFAULT_SCHEDULER_REPLICAS = 1
DEFAULT_MIGRATION_ENABLED = True
DEFAULT_BACKOFF_LIMIT = 2
DEFAULT_ACTIVE_DEADLINE_SECONDS = 600
DEFAULT_DRAIN_TIMEOUT_SECONDS = 300
DEFAULT_SWEEP_ENABLED = True
DEFAULT_SWEEP_SCHEDULE = "* * * * *"
DEFAULT_SWEEP_THRESHOLD = format_duration(STALE_AFTER)
DEFAULT_RECOVERY_DELAY = format_duration(RUNTIME_RECOVERY_DELAY)
DEFAULT_CLEANUP_ENABLED = True
DEFAULT_CLEANUP_SCHEDULE = "0 3 * * *"
# delete-permanently-failed-jobs destroys evidence, so it is opt-in.
DEFAULT_CLEANUP_OPERATIONS: tuple[str, ...] = ("gc-task-identifiers", "gc-job-queues")
DEFAULT_METRICS_ENABLED = True
DEFAULT_METRICS_PORT = 9464
DEFAULT_SERVICE_MONITOR = False
RECEIVER_PORT = 8080
DEFAULT_DASHBOARD_ENABLED = False
DEFAULT_DASHBOARD_HIDE_PAYLOADS = False
DASHBOARD_PORT = 8081
# Extra seconds Kubernetes waits after the worker's own graceful shutdown before SIGKILL.
TERMINATION_GRACE_MARGIN_SECONDS = 15


# CRD convention (docs/crd-conventions.md): a time is a duration string such as 30s or 5m, as in the CLI.
# The integer fields of v1alpha1 are still read, for one release: new name -> deprecated name.
DEPRECATED_SECONDS: dict[str, str] = {
    "gracefulShutdown": "gracefulShutdownSeconds",
    "scaleDownDelay": "scaleDownDelaySeconds",
    "activeDeadline": "activeDeadlineSeconds",
    "drainTimeout": "drainTimeoutSeconds",
}


def _seconds(raw: dict[str, Any], name: str, default: int, where: str) -> int:
    """Whole seconds from the duration field ``name``, else its deprecated integer twin, else ``default``.
    Rounded up: Kubernetes takes whole seconds, and a shorter deadline than asked would cut work off."""
    if raw.get(name) is not None:
        try:
            return math.ceil(parse_duration(str(raw[name]), field=f"{where}.{name}").total_seconds())
        except errors.ConfigurationError:
            # The CRD admits only the duration grammar, so this is one past the 100-year cap: no limit.
            return int(MAX_SECONDS)
    old = DEPRECATED_SECONDS[name]
    if raw.get(old) is not None:
        return int(raw[old])
    return default


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str = DEFAULT_SECRET_KEY

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SecretKeyRef:
        return cls(name=str(raw["name"]), key=str(raw.get("key", DEFAULT_SECRET_KEY)))


@dataclass(frozen=True)
class GraphileProvider:
    database_url: SecretKeyRef
    worker_database_url: SecretKeyRef | None = None
    schema: str = DEFAULT_SCHEMA


@dataclass(frozen=True)
class QStashProvider:
    secret_name: str
    callback_url: str


@dataclass(frozen=True)
class Autoscaling:
    max_replicas: int
    min_replicas: int = DEFAULT_MIN_REPLICAS
    target_jobs_per_replica: int = DEFAULT_TARGET_JOBS_PER_REPLICA
    scale_down_delay_seconds: int = DEFAULT_SCALE_DOWN_DELAY_SECONDS


@dataclass(frozen=True)
class Workers:
    replicas: int = DEFAULT_REPLICAS
    concurrency: int | None = None  # unset: the worker's own default, or JOBS_CONCURRENCY from env
    queues: tuple[str, ...] = ()
    forbidden_flags: tuple[str, ...] = ()
    resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    env: tuple[dict[str, Any], ...] = ()
    poll_interval: str = DEFAULT_POLL_INTERVAL
    heartbeat_interval: str = DEFAULT_HEARTBEAT_INTERVAL
    graceful_shutdown_seconds: int = DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
    autoscaling: Autoscaling | None = None


@dataclass(frozen=True)
class Schedule:
    """One entry; every option the user left unset stays None, and the scheduler applies its defaults."""

    id: str
    task: str
    cron: str
    timezone: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    job_key_mode: str | None = None
    backfill: str | None = None
    max: int | None = None

    def to_file_entry(self) -> dict[str, Any]:
        """snake_case entry of the scheduler file (contracts.md "A schedule entry"): only what was set."""
        entry = {
            "id": self.id,
            "task": self.task,
            "cron": self.cron,
            "timezone": self.timezone,
            "payload": self.payload or None,
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "job_key": self.job_key,
            "job_key_mode": self.job_key_mode,
            "backfill": self.backfill,
            "max": self.max,
        }
        return {k: v for k, v in entry.items() if v is not None}


@dataclass(frozen=True)
class Scheduler:
    enabled: bool = DEFAULT_SCHEDULER_ENABLED
    replicas: int = DEFAULT_SCHEDULER_REPLICAS
    schedules: tuple[Schedule, ...] = ()


@dataclass(frozen=True)
class Migration:
    enabled: bool = DEFAULT_MIGRATION_ENABLED
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    active_deadline_seconds: int = DEFAULT_ACTIVE_DEADLINE_SECONDS
    drain_timeout_seconds: int = DEFAULT_DRAIN_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Sweep:
    enabled: bool = DEFAULT_SWEEP_ENABLED
    schedule: str = DEFAULT_SWEEP_SCHEDULE
    sweep_threshold: str = DEFAULT_SWEEP_THRESHOLD
    recovery_delay: str = DEFAULT_RECOVERY_DELAY


@dataclass(frozen=True)
class Cleanup:
    enabled: bool = DEFAULT_CLEANUP_ENABLED
    schedule: str = DEFAULT_CLEANUP_SCHEDULE
    operations: tuple[str, ...] = DEFAULT_CLEANUP_OPERATIONS


@dataclass(frozen=True)
class Metrics:
    enabled: bool = DEFAULT_METRICS_ENABLED
    port: int = DEFAULT_METRICS_PORT
    service_monitor: bool = DEFAULT_SERVICE_MONITOR


@dataclass(frozen=True)
class Dashboard:
    """The read-only ``jobworker dashboard``; ``database_url`` None means the provider's owner URL."""

    enabled: bool = DEFAULT_DASHBOARD_ENABLED
    hide_payloads: bool = DEFAULT_DASHBOARD_HIDE_PAYLOADS
    database_url: SecretKeyRef | None = None


@dataclass(frozen=True)
class PodTemplate:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = field(default_factory=dict)
    service_account_name: str | None = None
    security_context: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pool:
    name: str
    namespace: str
    uid: str
    generation: int
    image: str
    tasks: str
    provider: ProviderType = DEFAULT_PROVIDER
    graphile: GraphileProvider | None = None
    qstash: QStashProvider | None = None
    image_pull_policy: str = DEFAULT_IMAGE_PULL_POLICY
    workers: Workers = field(default_factory=Workers)
    scheduler: Scheduler = field(default_factory=Scheduler)
    migration: Migration = field(default_factory=Migration)
    sweep: Sweep = field(default_factory=Sweep)
    cleanup: Cleanup = field(default_factory=Cleanup)
    metrics: Metrics = field(default_factory=Metrics)
    dashboard: Dashboard = field(default_factory=Dashboard)
    pod_template: PodTemplate = field(default_factory=PodTemplate)

    @property
    def schema(self) -> str:
        return self.graphile.schema if self.graphile else DEFAULT_SCHEMA

    @property
    def migration_digest(self) -> str:
        """Identifies one migration: a new image, schema or database (its Secret reference) needs a new
        migrate Job, so that workers never roll out onto a database nobody migrated."""
        database = self.graphile.database_url if self.graphile else None
        return names.digest(self.image, self.schema, database and (database.name, database.key))

    @classmethod
    def from_body(cls, body: Any) -> Pool:
        """Build from a kopf body or a plain dict; absent fields take the defaults above."""
        meta, spec = dict(body["metadata"]), dict(body.get("spec") or {})
        provider = dict(spec.get("provider") or {})
        return cls(
            name=str(meta["name"]),
            namespace=str(meta.get("namespace") or "default"),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            image=str(spec["image"]),
            tasks=str(spec["tasks"]),
            provider=cast(ProviderType, provider.get("type", DEFAULT_PROVIDER)),
            graphile=_graphile(provider.get("graphile")),
            qstash=_qstash(provider.get("qstash")),
            image_pull_policy=str(spec.get("imagePullPolicy", DEFAULT_IMAGE_PULL_POLICY)),
            workers=_workers(spec.get("workers") or {}),
            scheduler=_scheduler(spec.get("scheduler") or {}),
            migration=_migration(spec.get("migration") or {}),
            sweep=_sweep(spec.get("sweep") or {}),
            cleanup=_cleanup(spec.get("cleanup") or {}),
            metrics=_metrics(spec.get("metrics") or {}),
            dashboard=_dashboard(spec.get("dashboard") or {}),
            pod_template=_pod_template(spec.get("podTemplate") or {}),
        )


def _graphile(raw: dict[str, Any] | None) -> GraphileProvider | None:
    if not raw:
        return None
    worker_ref = raw.get("workerDatabaseUrlSecretRef")
    return GraphileProvider(
        database_url=SecretKeyRef.from_dict(raw["databaseUrlSecretRef"]),
        worker_database_url=SecretKeyRef.from_dict(worker_ref) if worker_ref else None,
        schema=str(raw.get("schema", DEFAULT_SCHEMA)),
    )


def _qstash(raw: dict[str, Any] | None) -> QStashProvider | None:
    if not raw:
        return None
    return QStashProvider(secret_name=str(raw["secretRef"]["name"]), callback_url=str(raw["callbackUrl"]))


def _workers(raw: dict[str, Any]) -> Workers:
    auto = raw.get("autoscaling")
    autoscaling = None
    if auto:
        autoscaling = Autoscaling(
            max_replicas=int(auto["maxReplicas"]),
            min_replicas=int(auto.get("minReplicas", DEFAULT_MIN_REPLICAS)),
            target_jobs_per_replica=int(auto.get("targetJobsPerReplica", DEFAULT_TARGET_JOBS_PER_REPLICA)),
            scale_down_delay_seconds=_seconds(
                auto, "scaleDownDelay", DEFAULT_SCALE_DOWN_DELAY_SECONDS, "workers.autoscaling"
            ),
        )
    return Workers(
        replicas=int(raw.get("replicas", DEFAULT_REPLICAS)),
        concurrency=int(raw["concurrency"]) if raw.get("concurrency") is not None else None,
        queues=tuple(raw.get("queues") or ()),
        forbidden_flags=tuple(raw.get("forbiddenFlags") or ()),
        resources=dict(raw.get("resources", DEFAULT_RESOURCES)),
        env=tuple(dict(e) for e in raw.get("env") or ()),
        poll_interval=str(raw.get("pollInterval", DEFAULT_POLL_INTERVAL)),
        heartbeat_interval=str(raw.get("heartbeatInterval", DEFAULT_HEARTBEAT_INTERVAL)),
        graceful_shutdown_seconds=_seconds(raw, "gracefulShutdown", DEFAULT_GRACEFUL_SHUTDOWN_SECONDS, "workers"),
        autoscaling=autoscaling,
    )


def _schedule(raw: dict[str, Any]) -> Schedule:
    return Schedule(
        id=str(raw["id"]),
        task=str(raw["task"]),
        cron=str(raw["cron"]),
        timezone=raw.get("timezone"),
        payload=dict(raw.get("payload") or {}),
        queue=raw.get("queue"),
        priority=raw.get("priority"),
        max_attempts=raw.get("maxAttempts"),
        job_key=raw.get("jobKey"),
        job_key_mode=raw.get("jobKeyMode"),
        backfill=raw.get("backfill"),
        max=raw.get("max"),
    )


def _scheduler(raw: dict[str, Any]) -> Scheduler:
    return Scheduler(
        enabled=bool(raw.get("enabled", DEFAULT_SCHEDULER_ENABLED)),
        replicas=int(raw.get("replicas", DEFAULT_SCHEDULER_REPLICAS)),
        schedules=tuple(_schedule(s) for s in raw.get("schedules") or ()),
    )


def _migration(raw: dict[str, Any]) -> Migration:
    return Migration(
        enabled=bool(raw.get("enabled", DEFAULT_MIGRATION_ENABLED)),
        backoff_limit=int(raw.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
        active_deadline_seconds=_seconds(raw, "activeDeadline", DEFAULT_ACTIVE_DEADLINE_SECONDS, "migration"),
        drain_timeout_seconds=_seconds(raw, "drainTimeout", DEFAULT_DRAIN_TIMEOUT_SECONDS, "migration"),
    )


def _sweep(raw: dict[str, Any]) -> Sweep:
    return Sweep(
        enabled=bool(raw.get("enabled", DEFAULT_SWEEP_ENABLED)),
        schedule=str(raw.get("schedule", DEFAULT_SWEEP_SCHEDULE)),
        sweep_threshold=str(raw.get("sweepThreshold", DEFAULT_SWEEP_THRESHOLD)),
        recovery_delay=str(raw.get("recoveryDelay", DEFAULT_RECOVERY_DELAY)),
    )


def _cleanup(raw: dict[str, Any]) -> Cleanup:
    return Cleanup(
        enabled=bool(raw.get("enabled", DEFAULT_CLEANUP_ENABLED)),
        schedule=str(raw.get("schedule", DEFAULT_CLEANUP_SCHEDULE)),
        # cleanup.tasks is the deprecated name of operations, still read for one release.
        operations=tuple(raw.get("operations") or raw.get("tasks") or DEFAULT_CLEANUP_OPERATIONS),
    )


def _metrics(raw: dict[str, Any]) -> Metrics:
    return Metrics(
        enabled=bool(raw.get("enabled", DEFAULT_METRICS_ENABLED)),
        port=int(raw.get("port", DEFAULT_METRICS_PORT)),
        service_monitor=bool(raw.get("serviceMonitor", DEFAULT_SERVICE_MONITOR)),
    )


def _dashboard(raw: dict[str, Any]) -> Dashboard:
    ref = raw.get("databaseUrlSecretRef")
    return Dashboard(
        enabled=bool(raw.get("enabled", DEFAULT_DASHBOARD_ENABLED)),
        hide_payloads=bool(raw.get("hidePayloads", DEFAULT_DASHBOARD_HIDE_PAYLOADS)),
        database_url=SecretKeyRef.from_dict(ref) if ref else None,
    )


def _pod_template(raw: dict[str, Any]) -> PodTemplate:
    return PodTemplate(
        node_selector=dict(raw.get("nodeSelector") or {}),
        tolerations=tuple(dict(t) for t in raw.get("tolerations") or ()),
        affinity=dict(raw.get("affinity") or {}),
        service_account_name=raw.get("serviceAccountName"),
        security_context=dict(raw.get("securityContext") or {}),
        labels=dict(raw.get("labels") or {}),
        annotations=dict(raw.get("annotations") or {}),
    )
