"""The Helm chart on the real local control plane (tests/e2e/conftest.py): install with --skip-crds after
applying crds/, the operator pod Running on the kwok node under the `restricted` Pod Security Standard,
`helm test`, and the ServiceAccount's RBAC checked with `kubectl auth can-i --as=...`.

Pods never run containers here (kwok), so the operator itself is not exercised: its e2e tests run it with
the RBAC from `helm template --show-only templates/rbac.yaml`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helpers import CHART_DIR, REPO_ROOT, contract_rbac

RELEASE = "jwe2e"
HELM_TIMEOUT = "180s"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    service_account: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _helm(helm_bin: Path, cluster: Any, *args: str, check: bool = True, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    cmd = [str(helm_bin), "--kubeconfig", str(cluster.kubeconfig), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr}\n{proc.stdout}")
    return proc.stdout + proc.stderr


def _new_namespace(kubectl: Any, prefix: str, *, restricted: bool = False) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    if restricted:
        kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    return name


@pytest.fixture(scope="module")
def crds(kubectl: Any) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO_ROOT / "crds"))


@pytest.fixture(scope="module")
def release(crds: None, kubectl: Any, helm_bin: Path, cluster: Any) -> Iterator[Release]:
    """The chart installed with defaults (all namespaces) into a namespace enforcing `restricted`."""
    namespace = _new_namespace(kubectl, "e2e-chart", restricted=True)
    try:
        _helm(
            helm_bin,
            cluster,
            "install",
            RELEASE,
            str(CHART_DIR),
            "--namespace",
            namespace,
            "--skip-crds",
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        )
        yield Release(RELEASE, namespace, f"{RELEASE}-jobworker-operator")
    finally:
        _helm(helm_bin, cluster, "uninstall", RELEASE, "--namespace", namespace, "--wait", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


# API groups the local control plane does not serve: `kubectl auth can-i` cannot map their resources (it
# warns and asks about a group-less resource), so ask the API server with a SubjectAccessReview instead.
UNSERVED_GROUPS = {"monitoring.coreos.com"}


def _can_i(kubectl: Any, user: str, verb: str, resource: str, *, namespace: str | None = None) -> bool:
    """`kubectl auth can-i VERB RESOURCE[/SUB] --as=USER [-n NS]` -> True for "yes"."""
    name, _, subresource = resource.partition("/")
    plural, _, group = name.partition(".")
    if group in UNSERVED_GROUPS:
        attributes = {"verb": verb, "group": group, "resource": plural, "subresource": subresource}
        if namespace:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": attributes},
        }
        out = kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout
        return bool(json.loads(out)["status"].get("allowed"))
    args = ["auth", "can-i", verb, name]
    if subresource:
        args.append(f"--subresource={subresource}")
    args += ["-n", namespace] if namespace else []
    proc = kubectl(*args, f"--as={user}", check=False)
    answer = proc.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return answer == "yes"


def _qualified(group: str, resource: str) -> str:
    """`deployments.apps`, `jobworkerpools.jobworker.dev/status`, `configmaps` for kubectl auth can-i."""
    name, _, sub = resource.partition("/")
    qualified = f"{name}.{group}" if group else name
    return f"{qualified}/{sub}" if sub else qualified


def test_operator_pod_runs_on_the_kwok_node(release: Release, kubectl: Any) -> None:
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=operator"
    kubectl("wait", "pod", "-l", selector, "-n", release.namespace, "--for=condition=Ready", "--timeout=120s")
    pods = json.loads(kubectl("get", "pods", "-l", selector, "-n", release.namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    node = json.loads(kubectl("get", "node", pod["spec"]["nodeName"], "-o", "json").stdout)
    assert node["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
    assert pod["spec"]["serviceAccountName"] == release.service_account
    deployment = json.loads(
        kubectl("get", "deployment", release.service_account, "-n", release.namespace, "-o", "json").stdout
    )
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["status"].get("availableReplicas") == 1


def test_metrics_service_has_the_operator_as_endpoint(release: Release, kubectl: Any) -> None:
    service = json.loads(
        kubectl("get", "service", release.service_account, "-n", release.namespace, "-o", "json").stdout
    )
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"metrics": 9000, "health": 8080}
    kubectl(
        "wait",
        "endpointslice",
        "-n",
        release.namespace,
        "-l",
        f"kubernetes.io/service-name={release.service_account}",
        "--for=jsonpath={.endpoints[0].conditions.ready}=true",
        "--timeout=60s",
    )


def test_helm_test_hook_succeeds(release: Release, helm_bin: Path, cluster: Any) -> None:
    out = _helm(helm_bin, cluster, "test", release.name, "--namespace", release.namespace, "--timeout", "120s")
    assert "Phase:          Succeeded" in out or "Succeeded" in out, out


def test_rbac_allows_exactly_the_contract_verbs(release: Release, kubectl: Any) -> None:
    namespaced, cluster_scoped = contract_rbac()
    denied = []
    for group, resource, verbs in sorted(namespaced, key=str):
        for verb in sorted(verbs):
            if not _can_i(kubectl, release.user, verb, _qualified(group, resource), namespace=release.namespace):
                denied.append(f"{verb} {_qualified(group, resource)}")
    for group, resource, verbs in sorted(cluster_scoped, key=str):
        for verb in sorted(verbs):
            if not _can_i(kubectl, release.user, verb, _qualified(group, resource)):
                denied.append(f"{verb} {_qualified(group, resource)} (cluster)")
    assert not denied, f"{release.user} is denied: {denied}"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("delete", "secrets"),
        ("list", "secrets"),
        ("create", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("get", "nodes"),
        ("update", "deployments.apps"),
        ("delete", "jobworkerpools.jobworker.dev"),
        ("create", "jobworkerpools.jobworker.dev"),
        ("update", "jobworkerpools.jobworker.dev/status"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("list", "servicemonitors.monitoring.coreos.com"),
        ("delete", "namespaces"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ],
)
def test_rbac_denies_everything_else(release: Release, kubectl: Any, verb: str, resource: str) -> None:
    assert not _can_i(kubectl, release.user, verb, resource, namespace=release.namespace), (
        f"{release.user} may {verb} {resource}"
    )


def test_watch_namespaces_limits_rbac_to_those_namespaces(
    crds: None, kubectl: Any, helm_bin: Path, cluster: Any
) -> None:
    home = _new_namespace(kubectl, "e2e-chart-home")
    watched = _new_namespace(kubectl, "e2e-chart-watched")
    other = _new_namespace(kubectl, "e2e-chart-other")
    name = "jwwatch"
    user = f"system:serviceaccount:{home}:{name}-jobworker-operator"
    try:
        _helm(
            helm_bin,
            cluster,
            "install",
            name,
            str(CHART_DIR),
            "--namespace",
            home,
            "--skip-crds",
            "--set",
            f"watchNamespaces={{{watched}}}",
            "--set",
            "tests.enabled=false",
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        )
        assert _can_i(kubectl, user, "create", "deployments.apps", namespace=watched)
        assert _can_i(kubectl, user, "patch", "jobworkerpools.jobworker.dev/status", namespace=watched)
        assert _can_i(kubectl, user, "get", "secrets", namespace=watched)
        assert not _can_i(kubectl, user, "create", "deployments.apps", namespace=other)
        assert not _can_i(kubectl, user, "get", "secrets", namespace=other)
        assert not _can_i(kubectl, user, "list", "jobworkerpools.jobworker.dev", namespace=home)
        assert not _can_i(kubectl, user, "list", "deployments.apps", namespace="kube-system")
        # The cluster-scoped reads kopf needs stay cluster-wide.
        assert _can_i(kubectl, user, "list", "namespaces")
        assert _can_i(kubectl, user, "watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert not _can_i(kubectl, user, "get", "nodes")
        args = json.loads(kubectl("get", "deployment", f"{name}-jobworker-operator", "-n", home, "-o", "json").stdout)[
            "spec"
        ]["template"]["spec"]["containers"][0]["args"]
        assert args == ["--namespace", watched]
    finally:
        _helm(helm_bin, cluster, "uninstall", name, "--namespace", home, "--wait", check=False)
        for ns in (home, watched, other):
            kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
    leftovers = kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={name}", "-o", "name"
    ).stdout
    assert f"-{home}" not in leftovers, f"helm uninstall left cluster-scoped RBAC behind: {leftovers}"


def test_install_rejects_bad_values(crds: None, kubectl: Any, helm_bin: Path, cluster: Any) -> None:
    out = _helm(
        helm_bin,
        cluster,
        "install",
        "jwbad",
        str(CHART_DIR),
        "--namespace",
        "default",
        "--skip-crds",
        "--dry-run=server",
        "--set-string",
        "replicaCount=two",
        "--set",
        "watchNamespaces=team-a",
        check=False,
    )
    assert "values don't meet the specifications of the schema" in out, out
    assert "at '/replicaCount': got string, want integer" in out, out
    assert "at '/watchNamespaces': got string, want array" in out, out
