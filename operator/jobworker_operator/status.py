"""Pure builders for ``status``: metav1.Condition-shaped conditions and the summary fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobworker_operator.model import Pool
from jobworker_operator.plan import MigrationStep

READY, MIGRATED, PROGRESSING, DEGRADED = "Ready", "Migrated", "Progressing", "Degraded"


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(raw: str | None) -> datetime | None:
    if not raw:
        return None
    return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(
    old: list[dict[str, Any]] | None,
    new: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Keeps lastTransitionTime while a condition's status is unchanged (metav1.Condition semantics)."""
    previous = {c.get("type"): c for c in old or []}
    out = []
    for cond in new:
        before = previous.get(cond["type"])
        changed = before is None or before.get("status") != cond["status"]
        since = timestamp(now) if changed or not before else before.get("lastTransitionTime", timestamp(now))
        out.append({**cond, "lastTransitionTime": since})
    return out


@dataclass(frozen=True)
class Observed:
    """What one reconcile saw, fed to ``build``."""

    step: MigrationStep
    desired_replicas: int
    replicas: int
    ready_replicas: int
    selector: str
    children_available: bool
    problems: tuple[str, ...] = ()  # apply errors, unreachable DB: each makes the pool Degraded


def conditions(pool: Pool, seen: Observed) -> list[dict[str, Any]]:
    g, step = pool.generation, seen.step
    migrated = step.phase in ("Succeeded", "NotRequired")
    failed = step.phase == "Failed"
    if pool.provider == "noop":
        message = "provider noop runs no workloads; jobs are discarded by the application"
        return [
            condition(READY, True, "NoopProvider", message, g),
            condition(MIGRATED, True, "NotRequired", message, g),
            condition(PROGRESSING, False, "NoopProvider", message, g),
            condition(
                DEGRADED,
                bool(seen.problems),
                "Problems" if seen.problems else "AsExpected",
                "; ".join(seen.problems) or "no problems",
                g,
            ),
        ]
    ready = migrated and seen.children_available
    if ready:
        ready_reason, ready_msg = "Available", f"{seen.ready_replicas}/{seen.desired_replicas} workers ready"
    elif not migrated:
        ready_reason, ready_msg = step.reason, step.message
    else:
        ready_reason, ready_msg = "RollingOut", f"{seen.ready_replicas}/{seen.desired_replicas} workers ready"
    progressing = not failed and not ready
    degraded_reasons = ([step.message] if failed else []) + list(seen.problems)
    degraded_reason = step.reason if failed else ("Problems" if seen.problems else "AsExpected")
    return [
        condition(READY, ready, ready_reason, ready_msg, g),
        condition(MIGRATED, migrated, step.reason, step.message, g),
        condition(
            PROGRESSING,
            progressing,
            "Reconciling" if progressing else "Idle",
            ready_msg if progressing else "nothing to roll out",
            g,
        ),
        condition(DEGRADED, bool(degraded_reasons), degraded_reason, "; ".join(degraded_reasons) or "no problems", g),
    ]


def build(pool: Pool, seen: Observed, prior: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The status fields the operator owns (queue, autoscaling and migration are added by the caller)."""
    return {
        "observedGeneration": pool.generation,
        "provider": pool.provider,
        "replicas": seen.replicas,
        "readyReplicas": seen.ready_replicas,
        "desiredReplicas": seen.desired_replicas,
        "workers": f"{seen.ready_replicas}/{seen.desired_replicas}",
        "selector": seen.selector,
        "conditions": merge_conditions(prior.get("conditions"), conditions(pool, seen), now),
    }


def queue(stats: Any, now: datetime) -> dict[str, Any]:
    """status.queue from a ``QueueStats``-shaped object (contracts.md)."""
    oldest = stats.oldest_ready_seconds
    return {
        "ready": int(stats.ready),
        "scheduled": int(stats.scheduled),
        "locked": int(stats.locked),
        "failed": int(stats.failed),
        "oldestReadySeconds": None if oldest is None else int(oldest),
        "workersActive": int(stats.workers_active),
        "workersStale": int(stats.workers_stale),
        "observedAt": timestamp(now),
    }
