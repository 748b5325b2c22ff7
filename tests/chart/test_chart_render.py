"""Offline checks of charts/jobworker: lint, render with several value sets, validate against the
Kubernetes 1.33 OpenAPI schemas (kubernetes-validate), RBAC == docs/contracts.md, schema rejections.

Needs only the helm 3 binary (see helpers.find_helm); skips without it unless JOBWORKER_REQUIRE_CLUSTER=1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helpers import (
    CHART_DIR,
    KUBE_VERSION,
    MONITORING_API,
    by_kind,
    contract_rbac,
    render,
    require_helm,
    rules_as_set,
    run_helm,
    template_args,
)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (in the dev extra)"
)
from kubernetes_validate import utils as kv_utils  # noqa: E402

# Kinds kubernetes-validate has no schema for (CRD-defined): validated by their own tests below.
NOT_IN_KUBERNETES_SCHEMAS = {"ServiceMonitor", "PrometheusRule"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "watch-namespaces": {
        "watchNamespaces": ["team-a", "team-b"],
        "serviceAccount": {"annotations": {"example.com/role": "jobworker"}},
    },
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True, "queueBackedUpMinutes": 5, "labels": {"release": "prometheus"}},
        }
    },
    "custom": {
        "fullnameOverride": "jobs",
        "replicaCount": 0,
        "image": {
            "repository": "registry.example.com/jobworker-operator",
            "digest": "sha256:" + "a" * 64,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"create": False, "name": "existing-sa"},
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"team": "platform"},
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "KOPF_EXTRA", "value": "1"}],
        "livenessProbe": {"initialDelaySeconds": 1, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 6},
        "metrics": {
            "service": {"port": 9100, "annotations": {"example.com/a": "b"}},
            "grafanaDashboard": {"namespace": "monitoring", "annotations": {"grafana_folder": "jobs"}},
        },
        "tests": {"enabled": False},
    },
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_helm()


def _api_versions(name: str) -> tuple[str, ...]:
    return (MONITORING_API,) if name == "monitoring" else ()


def test_lint_strict(helm: Path) -> None:
    run_helm(helm, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART_DIR))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict_with_values(helm: Path, tmp_path: Path, name: str) -> None:
    values_file = tmp_path / "values.yaml"
    template_args(VALUE_SETS[name], values_file)  # writes the values file
    run_helm(helm, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART_DIR), "--values", str(values_file))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_renders_valid_kubernetes_1_33_objects(helm: Path, tmp_path: Path, name: str) -> None:
    docs = render(
        helm,
        VALUE_SETS[name],
        tmp_path / "values.yaml",
        api_versions=_api_versions(name),
        extra=["--include-crds"],
    )
    assert docs, "the chart rendered nothing"
    assert by_kind(docs, "CustomResourceDefinition"), "the chart's crds/ did not render"
    errors = []
    for doc in docs:
        if doc["kind"] in NOT_IN_KUBERNETES_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kv_utils.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def _operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    return deployment


def test_default_deployment_is_hardened(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {}, tmp_path / "values.yaml")
    deployment = _operator_deployment(docs)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    assert ports["metrics"] == 9000
    assert container["args"] == ["--all-namespaces"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    assert pod["serviceAccountName"] == by_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    assert container["image"].endswith(":0.1.0"), "image tag defaults to the chart's appVersion"


def test_metrics_service_selects_only_the_operator(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {}, tmp_path / "values.yaml")
    (service,) = by_kind(docs, "Service")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports["metrics"] == 9000
    selector = service["spec"]["selector"]
    # Pool children carry app.kubernetes.io/name=jobworker too; the component keeps the selectors disjoint.
    assert selector["app.kubernetes.io/component"] == "operator"
    pod_labels = _operator_deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_rbac_all_namespaces_is_exactly_the_contract(helm: Path, tmp_path: Path) -> None:
    namespaced, cluster = contract_rbac()
    assert namespaced and cluster, "could not parse the RBAC tables of docs/contracts.md"
    docs = render(helm, {}, tmp_path / "values.yaml", extra=["--show-only", "templates/rbac.yaml"])
    (role,) = by_kind(docs, "ClusterRole")
    assert rules_as_set(role["rules"]) == namespaced | cluster
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "jw-jobworker-operator", "namespace": "jobworker-system"}
    ]
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")


def test_rbac_watch_namespaces_uses_roles_plus_small_clusterrole(helm: Path, tmp_path: Path) -> None:
    namespaced, cluster = contract_rbac()
    values = {"watchNamespaces": ["team-a", "team-b"]}
    docs = render(helm, values, tmp_path / "values.yaml", extra=["--show-only", "templates/rbac.yaml"])
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert rules_as_set(cluster_role["rules"]) == cluster
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_as_set(role["rules"]) == namespaced
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "jobworker-system"
    (container,) = _operator_deployment(render(helm, values, tmp_path / "values2.yaml"))["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["args"] == ["--namespace", "team-a", "--namespace", "team-b"]


def test_rbac_can_be_disabled(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {"rbac": {"create": False}}, tmp_path / "values.yaml")
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & {d["kind"] for d in docs}


def test_monitoring_objects_need_the_api(helm: Path, tmp_path: Path) -> None:
    values = VALUE_SETS["monitoring"]
    without = render(helm, values, tmp_path / "a.yaml")
    assert not by_kind(without, "ServiceMonitor") and not by_kind(without, "PrometheusRule")
    with_api = render(helm, values, tmp_path / "b.yaml", api_versions=[MONITORING_API])
    (monitor,) = by_kind(with_api, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (service,) = by_kind(with_api, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    disabled = render(helm, {}, tmp_path / "c.yaml", api_versions=[MONITORING_API])
    assert not by_kind(disabled, "ServiceMonitor") and not by_kind(disabled, "PrometheusRule")


def test_prometheus_rule_alerts(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, VALUE_SETS["monitoring"], tmp_path / "values.yaml", api_versions=[MONITORING_API])
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {
        "JobworkerQueueBackedUp",
        "JobworkerPermanentFailuresGrowing",
        "JobworkerWorkersStale",
        "JobworkerPoolDegraded",
        "JobworkerOperatorDown",
    }
    assert "jobworker_queue_oldest_ready_seconds" in alerts["JobworkerQueueBackedUp"]["expr"]
    assert "> 300" in alerts["JobworkerQueueBackedUp"]["expr"], "queueBackedUpMinutes=5 -> 300 seconds"
    assert 'jobworker_queue_jobs{state="failed"}' in alerts["JobworkerPermanentFailuresGrowing"]["expr"]
    assert "jobworker_workers_stale" in alerts["JobworkerWorkersStale"]["expr"]
    assert 'jobworker_pool_condition{condition="Degraded"}' in alerts["JobworkerPoolDegraded"]["expr"]
    down = alerts["JobworkerOperatorDown"]["expr"]
    assert "absent(up{" in down and "== 0" in down
    (service,) = by_kind(docs, "Service")
    assert f'job="{service["metadata"]["name"]}"' in down, "Prometheus names the job after the Service"
    runbooks = Path(__file__).parents[2] / "docs" / "runbooks"
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{name}.md")
        assert (runbooks / f"{name}.md").is_file(), f"docs/runbooks/{name}.md is missing"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_grafana_dashboard_configmap(helm: Path, tmp_path: Path) -> None:
    import json

    docs = render(helm, {}, tmp_path / "values.yaml")
    dashboards = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1
    dashboard = json.loads(dashboards[0]["data"]["jobworker.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p.get("targets", []))
    for metric in (
        "jobworker_queue_jobs",
        "jobworker_queue_oldest_ready_seconds",
        "jobworker_workers_active",
        "jobworker_workers_stale",
        "jobworker_pool_replicas",
        "jobworker_pool_desired_replicas",
        "jobworker_jobs_completed_total",
        "jobworker_jobs_failed_total",
    ):
        assert metric in exprs, f"dashboard has no panel for {metric}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert not by_kind(
        render(helm, {"metrics": {"grafanaDashboard": {"enabled": False}}}, tmp_path / "o.yaml"), "ConfigMap"
    )


def test_helm_test_hook(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {}, tmp_path / "values.yaml")
    tests = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert [t["kind"] for t in tests] == ["Job"]
    (container,) = tests[0]["spec"]["template"]["spec"]["containers"]
    (service,) = by_kind(docs, "Service")
    assert container["args"][-1] == f"http://{service['metadata']['name']}.jobworker-system.svc:8080/healthz"
    off = render(helm, {"tests": {"enabled": False}}, tmp_path / "off.yaml")
    assert not [d for d in off if "helm.sh/hook" in d["metadata"].get("annotations", {})]


def test_custom_values_are_applied(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, VALUE_SETS["custom"], tmp_path / "values.yaml")
    assert not by_kind(docs, "ServiceAccount"), "serviceAccount.create=false"
    deployment = _operator_deployment(docs)
    assert deployment["metadata"]["name"] == "jobs-operator"
    assert deployment["spec"]["replicas"] == 0
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["spec"]["serviceAccountName"] == "existing-sa"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.com/jobworker-operator@sha256:" + "a" * 64
    assert container["args"] == ["--all-namespaces", "--verbose"]
    assert {"name": "KOPF_EXTRA", "value": "1"} in container["env"]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "existing-sa"
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"


BAD_VALUES = [
    ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
    ({"replicaCount": 2}, "at '/replicaCount': maximum"),
    ({"replicaCaunt": 1}, "additional properties 'replicaCaunt' not allowed"),
    ({"watchNamespaces": "team-a"}, "at '/watchNamespaces': got string, want array"),
    ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
    ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ({"metrics": {"serviceMonitor": {"enabeld": True}}}, "additional properties 'enabeld' not allowed"),
    (
        {"metrics": {"prometheusRule": {"failedJobsWindow": "one hour"}}},
        "at '/metrics/prometheusRule/failedJobsWindow'",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_schema_rejects_bad_values(helm: Path, tmp_path: Path, values: dict[str, Any], message: str) -> None:
    proc = run_helm(helm, *template_args(values, tmp_path / "values.yaml"), check=False)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_service_account_name_required_when_not_created(helm: Path, tmp_path: Path) -> None:
    proc = run_helm(helm, *template_args({"serviceAccount": {"create": False}}, tmp_path / "values.yaml"), check=False)
    assert proc.returncode != 0
    assert "serviceAccount.name is required" in proc.stderr


def test_kube_version_floor(helm: Path, tmp_path: Path) -> None:
    args = template_args({}, tmp_path / "values.yaml")
    args[args.index("--kube-version") + 1] = "1.27.0"
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr
