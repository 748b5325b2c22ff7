"""The local control plane is a real Kubernetes: controllers, scheduler, GC, RBAC and token auth work."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The ``kubectl`` fixture (see conftest.Kubectl for the full signature).
Kubectl = Callable[..., subprocess.CompletedProcess[str]]

NODE = "kwok-node-0"
IMAGE = "registry.invalid/jobworker/never-pulled:1"  # kwok never pulls or runs anything


def wait_until(what: str, check: Callable[[], bool], timeout: float = 90, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def job_manifest(name: str, namespace: str, pod_labels: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": IMAGE, "command": ["migrate"]}],
                    },
                },
            },
        }
    )


def test_server_is_kubernetes_1_33(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    server = version["serverVersion"]
    assert server["gitVersion"].startswith("v1.33."), server
    assert (server["major"], server["minor"]) == ("1", "33")


def test_fake_node_is_ready_and_schedulable(kubectl: Kubectl) -> None:
    node = get_json(kubectl, "node", NODE)
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["metadata"]["labels"]["type"] == "kwok"
    assert node["status"]["allocatable"]["cpu"] == "32"
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert not node["spec"].get("unschedulable")


def test_deployment_pod_becomes_ready_on_kwok_node(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "deployment", "web", f"--image={IMAGE}", "--replicas=2", "-n", namespace)
    # Deployment controller -> ReplicaSet controller -> scheduler -> kwok (pod-ready stage).
    kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=120s", timeout=150)
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE
        assert pod["status"]["phase"] == "Running"
        assert pod["status"].get("podIP")
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["Ready"] == "True"
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet"


def test_job_completes(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=job_manifest("migrate-ok", namespace, {"app": "migrate-ok"}))
    kubectl("wait", "--for=condition=Complete", "job/migrate-ok", "-n", namespace, "--timeout=120s", timeout=150)
    job = get_json(kubectl, "job", "migrate-ok", "-n", namespace)
    assert job["status"]["succeeded"] == 1
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", "app=migrate-ok")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def test_job_with_test_fail_label_fails(kubectl: Kubectl, namespace: str) -> None:
    labels = {"app": "migrate-bad", "jobworker.dev/test-fail": "true"}
    kubectl("apply", "-f", "-", input=job_manifest("migrate-bad", namespace, labels))
    kubectl("wait", "--for=condition=Failed", "job/migrate-bad", "-n", namespace, "--timeout=120s", timeout=150)
    job = get_json(kubectl, "job", "migrate-bad", "-n", namespace)
    assert not job["status"].get("succeeded")
    failed = {c["type"]: c for c in job["status"]["conditions"]}["Failed"]
    assert failed["status"] == "True"
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", "app=migrate-bad")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Failed"]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 1


def test_owner_reference_garbage_collection(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "owner", "--from-literal=a=1", "-n", namespace)
    owner_uid = get_json(kubectl, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "data": {"b": "2"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(child))
    kubectl("delete", "configmap", "owner", "-n", namespace)
    kubectl("wait", "--for=delete", "configmap/child", "-n", namespace, "--timeout=120s", timeout=150)
    assert kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0


def test_rbac_denies_service_account_without_permissions(
    kubectl: Kubectl, namespace: str, cluster: Any, tmp_path: Path
) -> None:
    user = f"system:serviceaccount:{namespace}:nobody"
    kubectl("create", "serviceaccount", "nobody", "-n", namespace)

    # Impersonation: the RBAC authorizer answers "no".
    denied = kubectl("auth", "can-i", "list", "pods", "-n", namespace, f"--as={user}", check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no"), denied
    allowed = kubectl("auth", "can-i", "list", "pods", "-n", namespace, check=False)
    assert allowed.stdout.strip() == "yes"

    # A real token from the TokenRequest API, used without the admin client certificate.
    token = kubectl("create", "token", "nobody", "-n", namespace, "--duration=10m").stdout.strip()
    token_kubeconfig = tmp_path / "nobody.kubeconfig"
    kubectl(
        "config",
        "set-cluster",
        "local",
        f"--server={cluster.server}",
        f"--certificate-authority={cluster.pki.ca_cert}",
        "--embed-certs",
        kubeconfig=token_kubeconfig,
    )
    kubectl("config", "set-credentials", "nobody", f"--token={token}", kubeconfig=token_kubeconfig)
    kubectl("config", "set-context", "local", "--cluster=local", "--user=nobody", kubeconfig=token_kubeconfig)
    kubectl("config", "use-context", "local", kubeconfig=token_kubeconfig)

    whoami = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=token_kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == user

    forbidden = kubectl("get", "pods", "-n", namespace, kubeconfig=token_kubeconfig, check=False)
    assert forbidden.returncode != 0
    assert "Forbidden" in forbidden.stderr and user in forbidden.stderr, forbidden.stderr

    # Granting the permission makes the same token work (the authorizer is live, not a stub).
    kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
    kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody",
        "-n",
        namespace,
    )
    wait_until(
        "the RoleBinding to take effect",
        lambda: kubectl("get", "pods", "-n", namespace, kubeconfig=token_kubeconfig, check=False).returncode == 0,
        timeout=60,
    )
    still_denied = kubectl("get", "secrets", "-n", namespace, kubeconfig=token_kubeconfig, check=False)
    assert still_denied.returncode != 0 and "Forbidden" in still_denied.stderr
