from __future__ import annotations

from prometheus_client import REGISTRY

from jobworker_operator import metrics


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_status_exports_the_conditions_and_replicas_the_chart_alerts_on() -> None:
    doc = {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "Degraded", "status": "True"},
        ],
        "readyReplicas": 2,
        "desiredReplicas": 3,
        "workers": "2/3",
    }
    metrics.observe_status("ns1", "orders", doc)
    assert _value("jobworker_pool_condition", namespace="ns1", pool="orders", condition="Degraded") == 1
    assert _value("jobworker_pool_condition", namespace="ns1", pool="orders", condition="Ready") == 0
    assert _value("jobworker_pool_replicas", namespace="ns1", pool="orders") == 2
    assert _value("jobworker_pool_desired_replicas", namespace="ns1", pool="orders") == 3
    metrics.forget("ns1", "orders")
    assert _value("jobworker_pool_condition", namespace="ns1", pool="orders", condition="Degraded") is None
    assert _value("jobworker_pool_replicas", namespace="ns1", pool="orders") is None
