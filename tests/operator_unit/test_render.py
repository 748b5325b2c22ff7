"""render.children: the children each provider and option gets, in apply order."""

from __future__ import annotations

from jobworker_operator import plan, render
from tests.operator_unit.helpers import QSTASH, pool


class TestChildren:
    def test_graphile_defaults(self) -> None:
        p = pool()
        kinds = [(o["kind"], o["metadata"]["name"]) for o in render.children(p, plan.components(p), worker_replicas=1)]
        assert kinds == [
            ("ConfigMap", "pool-schedules"),
            ("Deployment", "pool-scheduler"),
            ("Deployment", "pool-worker"),
            ("CronJob", "pool-sweep"),
            ("CronJob", "pool-cleanup"),
            ("Service", "pool-metrics"),
        ]

    def test_qstash(self) -> None:
        p = pool(provider=QSTASH)
        kinds = [o["kind"] for o in render.children(p, plan.components(p), worker_replicas=2)]
        assert kinds == ["ConfigMap", "Job", "Deployment", "Service"]

    def test_service_monitor_opt_in(self) -> None:
        p = pool(metrics={"serviceMonitor": True})
        kinds = [o["kind"] for o in render.children(p, plan.components(p), worker_replicas=1)]
        assert "ServiceMonitor" in kinds
