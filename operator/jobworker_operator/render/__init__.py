"""Pure renderers: ``render_*(pool, ...) -> dict`` manifests, and ``children()`` for the steady state."""

from __future__ import annotations

from typing import Any

from jobworker_operator import names
from jobworker_operator.model import Pool
from jobworker_operator.render.cronjobs import render_cleanup_cronjob, render_sweep_cronjob
from jobworker_operator.render.dashboard import render_dashboard_deployment, render_dashboard_service
from jobworker_operator.render.metrics import render_metrics_service, render_service_monitor
from jobworker_operator.render.migration_job import render_migration_job
from jobworker_operator.render.receiver import (
    render_receiver_deployment,
    render_receiver_service,
    render_schedule_sync_job,
)
from jobworker_operator.render.scheduler import (
    render_scheduler_deployment,
    render_schedules_configmap,
    schedules_problem,
)
from jobworker_operator.render.worker_deployment import render_worker_deployment

__all__ = [
    "children",
    "render_cleanup_cronjob",
    "render_dashboard_deployment",
    "render_dashboard_service",
    "render_metrics_service",
    "render_migration_job",
    "render_receiver_deployment",
    "render_receiver_service",
    "render_schedule_sync_job",
    "render_scheduler_deployment",
    "render_schedules_configmap",
    "render_service_monitor",
    "render_sweep_cronjob",
    "render_worker_deployment",
    "schedules_problem",
]


def children(pool: Pool, components: frozenset[str], *, worker_replicas: int) -> list[dict[str, Any]]:
    """Every steady-state child for the given components (see ``plan.components``), in apply order.

    ConfigMaps come before the Deployments that mount them; the migration Job is not included
    because it is gated separately (``plan.migration_step``).
    """
    out: list[dict[str, Any]] = []
    if names.SCHEDULER in components:
        out.append(render_schedules_configmap(pool))
        if pool.provider == "qstash":
            out.append(render_schedule_sync_job(pool))
        else:
            out.append(render_scheduler_deployment(pool))
    if names.WORKER in components:
        out.append(render_worker_deployment(pool, replicas=worker_replicas))
    if names.RECEIVER in components:
        out += [render_receiver_deployment(pool, replicas=worker_replicas), render_receiver_service(pool)]
    if names.SWEEP in components:
        out.append(render_sweep_cronjob(pool))
    if names.CLEANUP in components:
        out.append(render_cleanup_cronjob(pool))
    if names.METRICS in components:
        out.append(render_metrics_service(pool))
        if pool.metrics.service_monitor:
            out.append(render_service_monitor(pool))
    if names.DASHBOARD in components:
        out += [render_dashboard_deployment(pool), render_dashboard_service(pool)]
    return out
