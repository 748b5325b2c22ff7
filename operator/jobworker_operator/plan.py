"""Pure decisions: which children a pool has, migration gating and draining, replica counts.

Nothing here performs I/O, so every branch of the breaking-migration state machine is unit-tested.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from jobworker_operator import names
from jobworker_operator.model import Autoscaling, Pool
from jobworker_operator.render.migration_job import EXIT_BREAKING_PENDING, EXIT_SCHEMA_TOO_NEW, EXIT_SCHEMA_TOO_OLD


def components(pool: Pool) -> frozenset[str]:
    """Steady-state child components per provider (the migration Job is planned separately)."""
    if pool.provider == "noop":
        return frozenset()
    if pool.provider == "qstash":
        return frozenset({names.RECEIVER, *([names.SCHEDULER] if pool.scheduler.enabled else [])})
    wanted = {names.WORKER}
    if pool.scheduler.enabled:
        wanted.add(names.SCHEDULER)
    if pool.sweep.enabled:
        wanted.add(names.SWEEP)
    if pool.cleanup.enabled:
        wanted.add(names.CLEANUP)
    if pool.metrics.enabled:
        wanted.add(names.METRICS)
    if pool.dashboard.enabled:
        wanted.add(names.DASHBOARD)
    return frozenset(wanted)


# ---------------------------------------------------------------------------------------------- Jobs

JobPhase = Literal["running", "succeeded", "failed"]
_EXIT_CODE = re.compile(r"exit code (\d+)")


@dataclass(frozen=True)
class JobState:
    phase: JobPhase
    reason: str = ""
    message: str = ""
    exit_code: int | None = None


def job_state(job: dict[str, Any] | None) -> JobState | None:
    """Reads a batch/v1 Job's terminal conditions; ``None`` when the Job does not exist."""
    if job is None:
        return None
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return JobState("succeeded", cond.get("reason", ""), cond.get("message", ""))
        if cond.get("type") == "Failed":
            message = cond.get("message", "")
            # The podFailurePolicy message names the container's exit code (render/migration_job.py).
            match = _EXIT_CODE.search(message) if cond.get("reason") == "PodFailurePolicy" else None
            return JobState("failed", cond.get("reason", ""), message, int(match.group(1)) if match else None)
    return JobState("running")


# --------------------------------------------------------------------------------------- migration

MigrationPhase = Literal["NotRequired", "Succeeded", "Pending", "Running", "Draining", "Failed"]


@dataclass(frozen=True)
class MigrationStep:
    phase: MigrationPhase
    rollout: bool = False  # children may be applied with the pool's current image
    create_job: Literal["normal", "breaking"] | None = None
    drain: bool = False  # scale old workers (and scheduler) to zero
    restore: bool = False  # give the old (drained) workers and scheduler their replicas back
    drain_started_at: datetime | None = None
    reason: str = ""
    message: str = ""


def migration_step(
    pool: Pool,
    *,
    migrated_digest: str | None,
    normal: JobState | None,
    breaking: JobState | None,
    locked_jobs: int | None,
    drain_started_at: datetime | None,
    now: datetime,
) -> MigrationStep:
    """What to do next for the pool's current ``migration_digest``.

    ``migrated_digest`` is the digest recorded in status after the last success, so a finished Job
    that someone deletes is not run again.
    """
    if pool.provider != "graphile" or not pool.migration.enabled:
        return MigrationStep(
            "NotRequired",
            rollout=True,
            reason="NotRequired",
            message=f"provider {pool.provider} needs no migration"
            if pool.provider != "graphile"
            else "migration.enabled is false",
        )
    digest = pool.migration_digest
    done = MigrationStep("Succeeded", rollout=True, reason="Migrated", message=f"schema migrated for {digest}")
    if migrated_digest == digest:
        return done
    if breaking is not None:
        return _breaking_step(pool, breaking, done)
    if normal is None:
        return MigrationStep(
            "Pending",
            create_job="normal",
            reason="MigrationPending",
            message=f"starting {names.migrate_job(pool.name, digest)}",
        )
    if normal.phase == "running":
        return MigrationStep(
            "Running", reason="MigrationRunning", message=f"{names.migrate_job(pool.name, digest)} is running"
        )
    if normal.phase == "succeeded":
        return done
    if normal.exit_code == EXIT_BREAKING_PENDING:
        return _drain_step(pool, locked_jobs=locked_jobs, started=drain_started_at, now=now)
    if normal.exit_code == EXIT_SCHEMA_TOO_NEW:
        return MigrationStep(
            "Failed",
            reason="SchemaTooNew",
            message=f"the database schema is newer than image {pool.image}: {normal.message}",
        )
    if normal.exit_code == EXIT_SCHEMA_TOO_OLD:
        return MigrationStep(
            "Failed",
            reason="SchemaTooOld",
            message=f"schema {pool.schema} is at a graphile-worker migration older than 19, which jobworker "
            "cannot upgrade from: run graphile-worker 0.17 once (npx graphile-worker@0.17 --schema-only), "
            f"then delete Job {names.migrate_job(pool.name, digest)} to run it again ({normal.message})",
        )
    return MigrationStep(
        "Failed",
        reason=normal.reason or "MigrationFailed",
        message=f"{names.migrate_job(pool.name, digest)} failed: {normal.message}",
    )


def _drain_step(pool: Pool, *, locked_jobs: int | None, started: datetime | None, now: datetime) -> MigrationStep:
    # A reading from the pass that starts the drain was taken while the old workers still ran: not drained.
    drained = locked_jobs == 0 and started is not None
    started = started or now
    waited = (now - started).total_seconds()
    timeout = pool.migration.drain_timeout_seconds
    if drained or waited >= timeout:
        why = "no jobs are locked" if drained else f"drain timed out after {timeout}s"
        return MigrationStep(
            "Draining",
            create_job="breaking",
            drain=True,
            drain_started_at=started,
            reason="BreakingMigration",
            message=f"{why}; running migrate --allow-breaking",
        )
    locked = "unknown (database unreachable)" if locked_jobs is None else str(locked_jobs)
    return MigrationStep(
        "Draining",
        drain=True,
        drain_started_at=started,
        reason="DrainingWorkers",
        message=f"breaking migration pending: workers scaled to 0, waiting for locked jobs "
        f"to finish ({locked} locked, {int(waited)}s of {timeout}s)",
    )


def _breaking_step(pool: Pool, breaking: JobState, done: MigrationStep) -> MigrationStep:
    name = names.migrate_job(pool.name, pool.migration_digest, breaking=True)
    if breaking.phase == "succeeded":
        return done
    if breaking.phase == "running":
        return MigrationStep("Draining", drain=True, reason="BreakingMigration", message=f"{name} is running")
    # The failed breaking migration left the schema where it was, so the old workers come back.
    return MigrationStep(
        "Failed",
        restore=True,
        reason=breaking.reason or "MigrationFailed",
        message=f"{name} failed: {breaking.message}",
    )


# -------------------------------------------------------------------------------------- replicas


def desired_replicas(ready_jobs: int, autoscaling: Autoscaling, locked_jobs: int = 0) -> int:
    """clamp(ceil((ready + locked) / targetJobsPerReplica), min, max).

    Running (locked) jobs are demand too: counting only ready ones scaled a pool with minReplicas 0 down under
    a job longer than scaleDownDelaySeconds, which returned it (attempt refunded) to run again, for ever.
    """
    demand = ready_jobs + locked_jobs
    wanted = math.ceil(demand / autoscaling.target_jobs_per_replica) if demand > 0 else 0
    return max(autoscaling.min_replicas, min(autoscaling.max_replicas, wanted))


def busy_pods(newest_lock_seconds: Sequence[float] | None, holders: int, grace_seconds: float) -> int | None:
    """The workers (one per pod) that locked a job within the scale-down grace: the pods a scale-down keeps.

    ``newest_lock_seconds`` holds, per worker holding jobs, the age of its newest lock, youngest first, and
    may stop short of all ``holders`` (the reading is bounded). Those beyond the cut count as busy, unless
    the last one listed is already past the grace: sorted, every one beyond it is older still. A worker whose
    every job has run past the grace is not kept: a stuck or very long job must not pin the pool at its size.
    None (a reading without lock ages, from an older worker image) means unknown.
    """
    if newest_lock_seconds is None:
        return None
    young = sum(1 for age in newest_lock_seconds if age < grace_seconds)
    unlisted = max(0, holders - len(newest_lock_seconds))
    return young + unlisted if young == len(newest_lock_seconds) else young


@dataclass(frozen=True)
class AutoscaleDecision:
    replicas: int
    below_since: datetime | None  # when the desired count first dropped below the current one


def autoscale(
    autoscaling: Autoscaling,
    *,
    current: int | None,
    ready_jobs: int | None,
    below_since: datetime | None,
    now: datetime,
    locked_jobs: int = 0,
    busy: int | None = None,
) -> AutoscaleDecision:
    """Scale up at once; scale down only after desired stayed lower for scaleDownDelay, and never
    below the pods running jobs, which a scale-down would interrupt, unless their jobs have run past the
    scale-down grace (also scaleDownDelay).

    ``busy`` is ``busy_pods(...)``: the pods with a job locked within the grace. Without it (None: the reading
    has no lock ages) each locked job may run on a pod of its own, so up to one pod per locked job is kept.
    Without a queue reading (DB unreachable) the current count is kept.
    """
    if ready_jobs is None:
        keep = current if current is not None else autoscaling.min_replicas
        return AutoscaleDecision(max(autoscaling.min_replicas, min(autoscaling.max_replicas, keep)), below_since)
    desired = desired_replicas(ready_jobs, autoscaling, locked_jobs)
    if current is not None:
        # A lowered maxReplicas (or raised minReplicas) applies at once; only the queue waits for the delay.
        current = max(autoscaling.min_replicas, min(autoscaling.max_replicas, current))
        desired = max(desired, min(locked_jobs if busy is None else busy, current))
    if current is None or desired >= current:
        return AutoscaleDecision(desired, None)
    since = below_since or now
    if (now - since).total_seconds() >= autoscaling.scale_down_delay_seconds:
        return AutoscaleDecision(desired, None)
    return AutoscaleDecision(current, since)


def worker_replicas(pool: Pool, autoscaled: int | None) -> int:
    """The autoscaler is the only writer when enabled; otherwise spec.workers.replicas (/scale)."""
    if pool.workers.autoscaling is not None:
        return autoscaled if autoscaled is not None else pool.workers.autoscaling.min_replicas
    return pool.workers.replicas


def deployment_available(deployment: dict[str, Any] | None) -> bool:
    """Rolled out to the current generation with every desired replica available."""
    if deployment is None:
        return False
    meta, spec, st = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    return (
        int(st.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
        and int(st.get("updatedReplicas", 0)) >= want
        and int(st.get("availableReplicas", 0)) >= want
    )
