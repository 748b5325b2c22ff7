"""The schedules ConfigMap and the ``jobworker scheduler`` Deployment."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from jobworker_operator import names
from jobworker_operator.model import Pool
from jobworker_operator.render import common
from jobworker_operator.render.worker_deployment import http_probe


def schedules_document(pool: Pool) -> str:
    """The scheduler file: JSON (valid YAML), snake_case, stable key order so the checksum is stable."""
    entries = [s.to_file_entry() for s in pool.scheduler.schedules]
    return json.dumps(entries, indent=2, sort_keys=True) + "\n"


def schedules_problem(pool: Pool) -> str | None:
    """What the scheduler would refuse in the rendered file (an unknown time zone, a cron that cannot fire),
    found by its own parser so that it shows in the pool's status instead of a crash-looping pod."""
    from jobworker import crontab, errors

    try:
        crontab.parse_schedules(json.loads(schedules_document(pool)), where="spec.scheduler.schedules")
    except errors.ConfigurationError as exc:
        return str(exc)
    return None


def schedules_checksum(pool: Pool) -> str:
    return hashlib.sha256(schedules_document(pool).encode()).hexdigest()


def render_schedules_configmap(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": common.metadata(pool, names.schedules_configmap(pool.name), names.SCHEDULER),
        "data": {names.SCHEDULES_FILE: schedules_document(pool)},
    }


def render_scheduler_deployment(pool: Pool) -> dict[str, Any]:
    volume, mount = common.schedules_volume(pool)
    args = [
        "scheduler",
        "--tasks",
        pool.tasks,
        "--schedules",
        common.schedules_path(),
        "--http-port",
        str(pool.metrics.port),
    ]
    container = common.container(
        pool,
        "scheduler",
        args,
        [*common.database_env(pool), *pool.workers.env],
        ports=[{"name": "http", "containerPort": pool.metrics.port, "protocol": "TCP"}],
        livenessProbe=http_probe(),
        resources=pool.workers.resources,
        volumeMounts=[mount],
    )
    spec = common.pod_spec(pool, [container], volumes=[volume])
    # A ConfigMap change does not touch the pod template by itself; the checksum makes it roll.
    checksum = {names.ANNOTATION_SCHEDULES_CHECKSUM: schedules_checksum(pool)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(pool, names.scheduler_deployment(pool.name), names.SCHEDULER),
        "spec": {
            "replicas": pool.scheduler.replicas,
            # Recreate: two scheduler generations must not overlap while the file changes.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": names.selector_labels(pool.name, names.SCHEDULER)},
            "template": common.pod_template(pool, names.SCHEDULER, spec, checksum),
        },
    }
