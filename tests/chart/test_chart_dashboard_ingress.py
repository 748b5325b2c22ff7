"""The chart's optional Ingress to a pool's dashboard Service (<pool>-dashboard, created by the operator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helpers import KUBE_VERSION, by_kind, render, require_helm, run_helm, template_args

kubernetes_validate = pytest.importorskip("kubernetes_validate")


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_helm()


def test_no_ingress_by_default(helm: Path, tmp_path: Path) -> None:
    assert by_kind(render(helm, {}, tmp_path / "v.yaml"), "Ingress") == []


def test_ingress_routes_to_the_pools_dashboard_service(helm: Path, tmp_path: Path) -> None:
    values = {
        "dashboardIngress": {
            "enabled": True,
            "pool": "emails",
            "namespace": "team-a",
            "className": "nginx",
            "host": "jobs.example.com",
            "annotations": {"nginx.ingress.kubernetes.io/auth-url": "https://auth.example.com/oauth2/auth"},
            "tls": [{"hosts": ["jobs.example.com"], "secretName": "jobs-tls"}],
        }
    }
    (ingress,) = by_kind(render(helm, values, tmp_path / "v.yaml"), "Ingress")
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    assert (ingress["metadata"]["name"], ingress["metadata"]["namespace"]) == ("emails-dashboard", "team-a")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "jobs.example.com"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["backend"]["service"] == {"name": "emails-dashboard", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"] == values["dashboardIngress"]["annotations"]


def test_minimal_ingress_is_valid(helm: Path, tmp_path: Path) -> None:
    (ingress,) = by_kind(
        render(helm, {"dashboardIngress": {"enabled": True, "pool": "p"}}, tmp_path / "v.yaml"), "Ingress"
    )
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    assert "host" not in ingress["spec"]["rules"][0] and "ingressClassName" not in ingress["spec"]


def test_enabled_without_a_pool_fails_with_the_field_name(helm: Path, tmp_path: Path) -> None:
    args = template_args({"dashboardIngress": {"enabled": True}}, tmp_path / "v.yaml")
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode != 0 and "dashboardIngress.pool" in proc.stderr
