"""The read-only ``jobworker dashboard`` of a pool: a Deployment and a Service, hardened like the workers."""

from __future__ import annotations

from typing import Any

from jobworker_operator import model, names
from jobworker_operator.model import Pool
from jobworker_operator.render import common
from jobworker_operator.render.worker_deployment import http_probe

DASHBOARD_RESOURCES: dict[str, Any] = {"requests": {"cpu": "50m", "memory": "96Mi"}}


def _env(pool: Pool) -> list[dict[str, Any]]:
    """The dashboard's own (read-only) URL when given, else the provider's; never WORKER_DATABASE_URL."""
    assert pool.graphile is not None
    ref = pool.dashboard.database_url or pool.graphile.database_url
    return [{"name": "JOBWORKER_SCHEMA", "value": pool.graphile.schema}, common.secret_env("DATABASE_URL", ref)]


def render_dashboard_deployment(pool: Pool) -> dict[str, Any]:
    # Read-only: no --allow-actions, so the sessions run with default_transaction_read_only and the pages
    # have no buttons. 0.0.0.0 because the Service reaches the pod over its IP.
    args = ["dashboard", "--host", "0.0.0.0", "--port", str(model.DASHBOARD_PORT)]
    if pool.dashboard.hide_payloads:
        args.append("--hide-payloads")
    container = common.container(
        pool,
        "dashboard",
        args,
        _env(pool),
        ports=[{"name": "http", "containerPort": model.DASHBOARD_PORT, "protocol": "TCP"}],
        livenessProbe=http_probe(),
        readinessProbe=http_probe(period=5),
        resources=DASHBOARD_RESOURCES,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(pool, names.dashboard(pool.name), names.DASHBOARD),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": names.selector_labels(pool.name, names.DASHBOARD)},
            "template": common.pod_template(pool, names.DASHBOARD, common.pod_spec(pool, [container])),
        },
    }


def render_dashboard_service(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.metadata(pool, names.dashboard(pool.name), names.DASHBOARD),
        "spec": {
            "selector": names.selector_labels(pool.name, names.DASHBOARD),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
