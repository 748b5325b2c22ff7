"""render/metrics.py: one class per render function, each covering the defaults first."""

from __future__ import annotations

from jobworker_operator import render
from tests.operator_unit.helpers import assert_owned, pool


class TestRenderMetricsService:
    def test_defaults(self) -> None:
        svc = render.render_metrics_service(pool())
        assert svc["metadata"]["name"] == "pool-metrics"
        assert_owned(svc, "metrics")
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "worker"
        assert svc["spec"]["ports"][0]["port"] == 9464


class TestRenderServiceMonitor:
    def test_defaults(self) -> None:
        sm = render.render_service_monitor(pool())
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        endpoint = sm["spec"]["endpoints"][0]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
        assert endpoint["relabelings"] == [
            {"sourceLabels": ["__meta_kubernetes_pod_label_jobworker_dev_pool"], "targetLabel": "pool"}
        ]
        assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"
