"""QStash provider children: the ``jobworker serve`` receiver (Deployment + Service) and schedule sync Job."""

from __future__ import annotations

from typing import Any

from jobworker_operator import model, names
from jobworker_operator.model import Pool
from jobworker_operator.render import common
from jobworker_operator.render.scheduler import schedules_checksum
from jobworker_operator.render.worker_deployment import http_probe


def _qstash_env(pool: Pool) -> dict[str, Any]:
    assert pool.qstash is not None
    return {"envFrom": [{"secretRef": {"name": pool.qstash.secret_name}}]}


def render_receiver_deployment(pool: Pool, *, replicas: int) -> dict[str, Any]:
    assert pool.qstash is not None
    args = ["serve", "--tasks", pool.tasks, "--port", str(model.RECEIVER_PORT)]
    env = [{"name": "QSTASH_CALLBACK_URL", "value": pool.qstash.callback_url}, *pool.workers.env]
    container = common.container(
        pool,
        "receiver",
        args,
        env,
        ports=[{"name": "http", "containerPort": model.RECEIVER_PORT, "protocol": "TCP"}],
        livenessProbe=http_probe(),
        readinessProbe=http_probe(period=5),
        resources=pool.workers.resources,
        **_qstash_env(pool),
    )
    spec = common.pod_spec(
        pool,
        [container],
        terminationGracePeriodSeconds=pool.workers.graceful_shutdown_seconds + model.TERMINATION_GRACE_MARGIN_SECONDS,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(pool, names.receiver(pool.name), names.RECEIVER),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": names.selector_labels(pool.name, names.RECEIVER)},
            "template": common.pod_template(pool, names.RECEIVER, spec),
        },
    }


def render_receiver_service(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.metadata(pool, names.receiver(pool.name), names.RECEIVER),
        "spec": {
            "selector": names.selector_labels(pool.name, names.RECEIVER),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def sync_digest(pool: Pool) -> str:
    """A new sync Job runs whenever the image or the schedules change."""
    return names.digest(pool.image, schedules_checksum(pool))


def render_schedule_sync_job(pool: Pool) -> dict[str, Any]:
    volume, mount = common.schedules_volume(pool)
    args = ["qstash", "sync-schedules", "--tasks", pool.tasks, "--schedules", common.schedules_path()]
    container = common.container(pool, "sync", args, [*pool.workers.env], volumeMounts=[mount], **_qstash_env(pool))
    spec = common.pod_spec(pool, [container], restartPolicy="Never", volumes=[volume])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": common.metadata(pool, names.schedule_sync_job(pool.name, sync_digest(pool)), names.SCHEDULER),
        "spec": {
            "backoffLimit": pool.migration.backoff_limit,
            "activeDeadlineSeconds": pool.migration.active_deadline_seconds,
            "template": common.pod_template(pool, names.SCHEDULER, spec),
        },
    }
