"""The metrics Service over worker pods and the optional prometheus-operator ServiceMonitor."""

from __future__ import annotations

from typing import Any

from jobworker_operator import names
from jobworker_operator.model import Pool
from jobworker_operator.render import common


def render_metrics_service(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.metadata(pool, names.metrics_service(pool.name), names.METRICS),
        "spec": {
            # Headless: Prometheus scrapes every worker pod, not a load-balanced one.
            "clusterIP": "None",
            "selector": names.selector_labels(pool.name, names.WORKER),
            "ports": [{"name": "http", "port": pool.metrics.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_service_monitor(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": common.metadata(pool, names.metrics_service(pool.name), names.METRICS),
        "spec": {
            "selector": {"matchLabels": names.selector_labels(pool.name, names.METRICS)},
            "namespaceSelector": {"matchNames": [pool.namespace]},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    # The workers' own series carry no pool; the dashboard and alerts filter on it.
                    "relabelings": [
                        {
                            "sourceLabels": [f"__meta_kubernetes_pod_label_{_prometheus_name(names.LABEL_POOL)}"],
                            "targetLabel": "pool",
                        },
                    ],
                }
            ],
        },
    }


def _prometheus_name(label: str) -> str:
    """Prometheus' service discovery spells a Kubernetes label with every other character as ``_``."""
    return "".join(c if c.isalnum() else "_" for c in label)
