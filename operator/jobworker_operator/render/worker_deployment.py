"""The ``jobworker worker`` Deployment."""

from __future__ import annotations

from typing import Any

from jobworker_operator import model, names
from jobworker_operator.model import Pool
from jobworker_operator.render import common


def worker_args(pool: Pool) -> list[str]:
    w = pool.workers
    args = ["worker", "--tasks", pool.tasks]
    if w.concurrency is not None:  # else the worker's own default, or JOBS_CONCURRENCY from workers.env
        args += ["--concurrency", str(w.concurrency)]
    for queue in w.queues:
        args += ["--queue", queue]
    for flag in w.forbidden_flags:
        args += ["--forbidden-flag", flag]
    # Only when set away from the defaults, so existing pools keep their pod template (and a
    # JOBWORKER_HEARTBEAT_INTERVAL in workers.env keeps working). The worker fences itself at half the
    # sweep threshold, so it must know the threshold the pool's sweep CronJob uses.
    if w.heartbeat_interval != model.DEFAULT_HEARTBEAT_INTERVAL:
        args += ["--heartbeat-interval", w.heartbeat_interval]
    if pool.sweep.sweep_threshold != model.DEFAULT_SWEEP_THRESHOLD:
        args += ["--sweep-threshold", pool.sweep.sweep_threshold]
    return [
        *args,
        "--poll-interval",
        w.poll_interval,
        "--graceful-shutdown",
        f"{w.graceful_shutdown_seconds}s",
        "--http-port",
        str(pool.metrics.port),
    ]


def http_probe(port_name: str = "http", *, period: int = 10) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz", "port": port_name},
        "initialDelaySeconds": 5,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def render_worker_deployment(pool: Pool, *, replicas: int) -> dict[str, Any]:
    w = pool.workers
    container = common.container(
        pool,
        "worker",
        worker_args(pool),
        [*common.database_env(pool, worker=True), *w.env],
        ports=[{"name": "http", "containerPort": pool.metrics.port, "protocol": "TCP"}],
        livenessProbe=http_probe(),
        readinessProbe=http_probe(period=5),
        resources=w.resources,
    )
    spec = common.pod_spec(
        pool,
        [container],
        # Kubernetes must not SIGKILL a worker that is still finishing jobs inside its own deadline.
        terminationGracePeriodSeconds=w.graceful_shutdown_seconds + model.TERMINATION_GRACE_MARGIN_SECONDS,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(pool, names.worker_deployment(pool.name), names.WORKER),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": names.selector_labels(pool.name, names.WORKER)},
            "template": common.pod_template(pool, names.WORKER, spec),
        },
    }
