"""Monitoring where the prometheus-operator API exists: the chart's ServiceMonitor and PrometheusRule, and
the ServiceMonitor the operator creates for a pool that asks for one.

The local control plane has no prometheus-operator, so this module serves its two kinds with minimal
CRDs of its own (schemaless: the API server stores what the chart renders), and removes them afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_fixtures import OperatorProcess, secret_manifest, wait_for
from test_chart import _helm, _new_namespace

from tests.chart.helpers import CHART_DIR

GROUP = "monitoring.coreos.com"
KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
ALERTS = {
    "JobworkerQueueBackedUp",
    "JobworkerPermanentFailuresGrowing",
    "JobworkerWorkersStale",
    "JobworkerPoolDegraded",
    "JobworkerOperatorDown",
}


def _crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def prometheus_operator_api(kubectl: Any) -> Iterator[None]:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": [_crd(k, p) for k, p in KINDS.items()]})
    kubectl("apply", "-f", "-", input=manifest)
    for plural in KINDS.values():
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.{GROUP}")
    try:
        yield
    finally:
        for plural in KINDS.values():
            kubectl("delete", "crd", f"{plural}.{GROUP}", "--wait=false", "--ignore-not-found", check=False)


def test_chart_installs_servicemonitor_and_alerts_when_the_api_exists(
    prometheus_operator_api: None, jwp_crd: str, kubectl: Any, helm_bin: Path, cluster: Any
) -> None:
    namespace = _new_namespace(kubectl, "e2e-mon")
    release = "jwmon"
    try:
        _helm(
            helm_bin,
            cluster,
            "install",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            "--skip-crds",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--wait",
            "--timeout",
            "180s",
        )
        monitors = json.loads(kubectl("get", "servicemonitors", "-n", namespace, "-o", "json").stdout)["items"]
        assert len(monitors) == 1
        endpoints = monitors[0]["spec"]["endpoints"]
        assert endpoints and endpoints[0].get("port") == "metrics"
        rules = json.loads(kubectl("get", "prometheusrules", "-n", namespace, "-o", "json").stdout)["items"]
        assert len(rules) == 1
        alerts = {r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"] if "alert" in r}
        assert alerts == ALERTS
        for group in rules[0]["spec"]["groups"]:
            for rule in group["rules"]:
                assert rule["annotations"]["runbook_url"].endswith(f"/{rule['alert']}.md")
    finally:
        _helm(helm_bin, cluster, "uninstall", release, "--namespace", namespace, "--wait", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def test_operator_creates_a_servicemonitor_for_a_pool_that_asks(
    prometheus_operator_api: None, kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    kubectl("apply", "-f", "-", input=secret_manifest(namespace, "db", pool_database))
    pool = {
        "apiVersion": "jobworker.dev/v1alpha1",
        "kind": "JobWorkerPool",
        "metadata": {"name": "watched", "namespace": namespace},
        "spec": {
            "image": "registry.example/app:1.0",
            "tasks": "app.tasks",
            "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
            "metrics": {"enabled": True, "serviceMonitor": True},
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(pool))

    def monitor() -> dict[str, Any] | None:
        items = json.loads(kubectl("get", "servicemonitors", "-n", namespace, "-o", "json").stdout)["items"]
        return items[0] if items else None

    found = wait_for("the pool's ServiceMonitor", monitor, timeout=120)
    owner = found["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("JobWorkerPool", "watched")
    assert found["metadata"]["labels"]["jobworker.dev/pool"] == "watched"
    service = json.loads(kubectl("get", "service", "watched-metrics", "-n", namespace, "-o", "json").stdout)
    selector = found["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), (
        "the ServiceMonitor must select the metrics Service"
    )
    relabel = found["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel["targetLabel"] == "pool"
