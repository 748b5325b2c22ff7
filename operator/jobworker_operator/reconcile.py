"""One idempotent pass over a pool: observe → plan → render → apply → status.

Every trigger (pool create/update/resume, the periodic timer, a child event) ends up in ``Runtime.trigger``,
which serialises passes per pool and coalesces bursts: a trigger that arrives while a pass is already
queued only joins it, because that pass will read the latest state when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobworker_operator import apply, metrics, names, plan, queue_stats, render, status
from jobworker_operator.apply import Api, Key, Obj
from jobworker_operator.model import Pool

log = logging.getLogger(__name__)
PoolKey = tuple[str, str]  # (namespace, name)


@dataclass
class Runtime:
    api: Api
    reader: queue_stats.Reader
    # "database": read the pool's database URL Secret and query it; "workers": ask the pool's workers
    # (no Secret access at all; settings.Options.queue_stats_source).
    stats_source: str = "database"
    locks: dict[PoolKey, asyncio.Lock] = field(default_factory=dict)
    pending: dict[PoolKey, bool] = field(default_factory=dict)  # key -> refresh queue stats
    stats_problem: dict[PoolKey, str] = field(default_factory=dict)  # last DB error, until a good reading
    # (namespace, pool, kind, name) of objects with a pool's labels but not owned by it, already reported once
    reported_foreign: set[tuple[str, str, str, str]] = field(default_factory=set)

    async def trigger(self, namespace: str, name: str, *, refresh_stats: bool = False) -> None:
        key = (namespace, name)
        if key in self.pending:
            self.pending[key] = self.pending[key] or refresh_stats
            return
        self.pending[key] = refresh_stats
        lock = self.locks.setdefault(key, asyncio.Lock())
        try:
            await lock.acquire()
        except asyncio.CancelledError:
            self.pending.pop(key, None)  # else every later trigger joins this pass, which never runs
            raise
        try:
            refresh = self.pending.pop(key)
            metrics.RECONCILE.labels(namespace, name).inc()
            try:
                await reconcile(self, namespace, name, refresh_stats=refresh)
            except apply.ApiError as exc:
                if apply.namespace_terminating(exc):
                    return  # the namespace and everything in it is going away
                metrics.RECONCILE_ERRORS.labels(namespace, name).inc()
                raise
            except Exception:
                metrics.RECONCILE_ERRORS.labels(namespace, name).inc()
                raise
        finally:
            lock.release()

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.stats_problem.pop(key, None)
        self.reported_foreign = {r for r in self.reported_foreign if r[:2] != key}
        lock = self.locks.get(key)
        if lock is not None and not lock.locked() and key not in self.pending:
            del self.locks[key]  # not while a pass holds or awaits it
        metrics.forget(namespace, name)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def reconcile(rt: Runtime, namespace: str, name: str, *, refresh_stats: bool) -> None:
    body = await rt.api.get_pool(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return  # deleted: owner references let the garbage collector remove the children
    pool = Pool.from_body(body)
    await _default_scale(rt.api, body, pool)
    prior: dict[str, Any] = body.get("status") or {}
    now = now_utc()
    extra: dict[str, Any] = {}

    reading = await _queue(rt, pool, prior, refresh_stats, now, extra)
    step, migration_status = await _migrate(rt.api, pool, prior, reading, now)
    extra["migration"] = migration_status
    replicas = plan.worker_replicas(pool, _autoscale(pool, prior, reading, now, extra))
    if step.restore:
        await _restore_replicas(rt.api, pool, replicas)

    live, foreign = apply.split_owned(await apply.live_children(rt.api, namespace, pool.name), pool.uid)
    problems = [p for p in [rt.stats_problem.get((namespace, name))] if p]
    if names.SCHEDULER in plan.components(pool) and (bad := render.schedules_problem(pool)):
        problems.append(bad)
    if step.rollout:
        desired = render.children(pool, plan.components(pool), worker_replicas=replicas)
        live, apply_problems = await apply.sync(rt.api, desired, live)
        problems += apply_problems
        keep = {(o["kind"], o["metadata"]["name"]) for o in desired} | _current_migration_jobs(pool)
        stale = {k: v for k, v in live.items() if k not in keep}
        # Wanted only with the metrics Service it selects (graphile): a provider change removes it too.
        wanted_monitor = names.METRICS in plan.components(pool) and pool.metrics.service_monitor
        monitor = None if wanted_monitor else names.metrics_service(pool.name)
        left_alone = await apply.prune(rt.api, stale, keep, namespace, owner_uid=pool.uid, monitor=monitor)
        foreign.update({key: {} for key in left_alone if key not in foreign})
        live = {k: v for k, v in live.items() if k in keep}
    await _report_foreign(rt, body, foreign)

    seen = _observe(pool, step, replicas, live, tuple(problems))
    doc = {**status.build(pool, seen, prior, now), **extra}
    metrics.observe_status(namespace, name, doc)
    try:
        await rt.api.patch_pool_status(namespace, name, doc)
    except apply.ApiError as exc:
        if exc.status != 404:  # deleted while this pass ran: nothing left to report on
            raise


async def _default_scale(api: Api, body: Obj, pool: Pool) -> None:
    """Write spec.workers.replicas when it is unset and no autoscaling is set: the /scale subresource reads
    that path, and an HPA or KEDA that reads 0 there would never scale. (The CRD cannot default it: the
    field must stay unset when workers.autoscaling is set.)"""
    if pool.workers.autoscaling is None and ((body.get("spec") or {}).get("workers") or {}).get("replicas") is None:
        patch = {"spec": {"workers": {"replicas": pool.workers.replicas}}}
        await api.merge_patch(names.API_VERSION, names.KIND, pool.namespace, pool.name, patch)


async def _report_foreign(rt: Runtime, pool_body: Obj, foreign: dict[Key, Obj]) -> None:
    """One event per object that carries the pool's labels without being owned by it: never deleted."""
    meta = pool_body["metadata"]
    for kind, child in sorted(foreign):
        seen = (meta["namespace"], meta["name"], kind, child)
        if seen in rt.reported_foreign:
            continue
        rt.reported_foreign.add(seen)
        log.warning(
            "pool %s/%s: %s %s has the pool's labels but is not owned by it; left alone",
            meta["namespace"],
            meta["name"],
            kind,
            child,
        )
        await rt.api.post_event(
            {"apiVersion": names.API_VERSION, "kind": names.KIND, **pool_body},
            "NotOwned",
            f"{kind} {child} carries the labels of pool {meta['name']} but no ownerReference to it "
            f"(uid {meta.get('uid')}); the operator leaves it alone: delete it or remove its labels",
        )


async def _queue(
    rt: Runtime, pool: Pool, prior: dict[str, Any], refresh: bool, now: datetime, extra: dict[str, Any]
) -> queue_stats.Reading | None:
    key = (pool.namespace, pool.name)
    if pool.provider != "graphile":
        rt.stats_problem.pop(key, None)
        return None
    draining = (prior.get("migration") or {}).get("phase") == "Draining"
    if not (refresh or draining):
        return None
    try:
        if rt.stats_source == "workers":
            reading = await queue_stats.read_from_workers(rt.api, pool)
        else:
            reading = await queue_stats.read(rt.api, pool, rt.reader)
    except queue_stats.QueueStatsError as exc:
        log.warning("pool %s/%s: %s", pool.namespace, pool.name, exc)
        rt.stats_problem[key] = str(exc)
        return None
    rt.stats_problem.pop(key, None)
    metrics.observe_queue(pool.namespace, pool.name, reading.stats)
    extra["queue"] = status.queue(reading.stats, now)
    if reading.schema_version is not None:
        extra["schemaVersion"] = reading.schema_version
    return reading


async def _migrate(
    api: Api, pool: Pool, prior: dict[str, Any], reading: queue_stats.Reading | None, now: datetime
) -> tuple[plan.MigrationStep, dict[str, Any]]:
    before: dict[str, Any] = prior.get("migration") or {}
    digest = pool.migration_digest
    normal = breaking = None
    if pool.provider == "graphile" and pool.migration.enabled and before.get("migratedDigest") != digest:
        normal = plan.job_state(await api.get("batch/v1", "Job", pool.namespace, names.migrate_job(pool.name, digest)))
        breaking = plan.job_state(
            await api.get("batch/v1", "Job", pool.namespace, names.migrate_job(pool.name, digest, breaking=True))
        )
    same_digest = before.get("digest") == digest
    step = plan.migration_step(
        pool,
        migrated_digest=before.get("migratedDigest"),
        normal=normal,
        breaking=breaking,
        locked_jobs=reading.stats.locked if reading else None,
        drain_started_at=status.parse_timestamp(before.get("drainStartedAt")) if same_digest else None,
        now=now,
    )
    if step.create_job:
        job = render.render_migration_job(pool, breaking=step.create_job == "breaking")
        log.info("pool %s/%s: creating %s", pool.namespace, pool.name, job["metadata"]["name"])
        await api.server_side_apply(job)
    if step.drain:
        await _scale_to_zero(api, pool)
    migrated = digest if step.phase == "Succeeded" else before.get("migratedDigest")
    out = {
        "digest": digest,
        "phase": step.phase,
        "jobName": names.migrate_job(pool.name, digest, breaking=breaking is not None or step.create_job == "breaking"),
        "drainStartedAt": status.timestamp(step.drain_started_at) if step.drain_started_at else None,
    }
    if migrated:
        out["migratedDigest"] = migrated
    return step, out


async def _scale_to_zero(api: Api, pool: Pool) -> None:
    """Drain for a breaking migration: only replicas change, so the old image stays in place.

    A merge patch (not an apply) so the rest of the Deployment keeps its previously applied fields.
    """
    for dep in (names.worker_deployment(pool.name), names.scheduler_deployment(pool.name)):
        live = await api.get("apps/v1", "Deployment", pool.namespace, dep)
        if live is not None and live.get("spec", {}).get("replicas") != 0:
            log.info("pool %s/%s: scaling %s to 0 for a breaking migration", pool.namespace, pool.name, dep)
            await api.merge_patch("apps/v1", "Deployment", pool.namespace, dep, {"spec": {"replicas": 0}})


async def _restore_replicas(api: Api, pool: Pool, worker_replicas: int) -> None:
    """Undo ``_scale_to_zero`` after a failed breaking migration: replicas only, the old image stays."""
    wanted = {names.worker_deployment(pool.name): worker_replicas}
    if pool.scheduler.enabled:
        wanted[names.scheduler_deployment(pool.name)] = pool.scheduler.replicas
    for dep, count in wanted.items():
        live = await api.get("apps/v1", "Deployment", pool.namespace, dep)
        if live is not None and live.get("spec", {}).get("replicas") != count:
            log.info("pool %s/%s: restoring %s to %d replicas", pool.namespace, pool.name, dep, count)
            await api.merge_patch("apps/v1", "Deployment", pool.namespace, dep, {"spec": {"replicas": count}})


def _autoscale(
    pool: Pool, prior: dict[str, Any], reading: queue_stats.Reading | None, now: datetime, extra: dict[str, Any]
) -> int | None:
    auto = pool.workers.autoscaling
    if auto is None:
        return None
    before: dict[str, Any] = prior.get("autoscaling") or {}
    holders = getattr(reading.stats, "lock_holders", None) if reading else None
    busy = plan.busy_pods(
        None if holders is None else [h.newest_lock_seconds for h in holders],
        getattr(reading.stats, "lock_holders_total", 0) if reading else 0,
        auto.scale_down_delay_seconds,
    )
    decision = plan.autoscale(
        auto,
        current=before.get("replicas"),
        ready_jobs=reading.stats.ready if reading else None,
        below_since=status.parse_timestamp(before.get("belowSince")),
        now=now,
        locked_jobs=reading.stats.locked if reading else 0,
        busy=busy,
    )
    since = decision.below_since
    extra["autoscaling"] = {"replicas": decision.replicas, "belowSince": status.timestamp(since) if since else None}
    return decision.replicas


def _current_migration_jobs(pool: Pool) -> set[Key]:
    digest = pool.migration_digest
    return {("Job", names.migrate_job(pool.name, digest)), ("Job", names.migrate_job(pool.name, digest, breaking=True))}


def _observe(
    pool: Pool, step: plan.MigrationStep, replicas: int, live: dict[Key, Obj], problems: tuple[str, ...]
) -> status.Observed:
    component = names.RECEIVER if pool.provider == "qstash" else names.WORKER
    workload_name = names.receiver(pool.name) if pool.provider == "qstash" else names.worker_deployment(pool.name)
    workload = live.get(("Deployment", workload_name))
    st = (workload or {}).get("status") or {}
    deployments = [o for (kind, _), o in live.items() if kind == "Deployment"]
    wanted = {c for c in plan.components(pool) if c in (names.WORKER, names.SCHEDULER, names.RECEIVER)}
    if pool.provider == "qstash":
        wanted.discard(names.SCHEDULER)  # qstash schedules are a Job, not a Deployment
    return status.Observed(
        step=step,
        desired_replicas=replicas,
        replicas=int(st.get("replicas", 0)),
        ready_replicas=int(st.get("readyReplicas", 0)),
        selector=names.selector_string(pool.name, component),
        children_available=step.rollout
        and len(deployments) == len(wanted)
        and all(plan.deployment_available(d) for d in deployments),
        problems=problems,
    )
