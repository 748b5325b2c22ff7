"""Builders shared by the operator unit tests."""

from __future__ import annotations

import copy
from typing import Any

from jobworker_operator.model import Pool

BASE_SPEC: dict[str, Any] = {
    "image": "registry.example/app:1.0",
    "tasks": "app.tasks",
    "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
}


def body(name: str = "pool", namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    merged = copy.deepcopy(BASE_SPEC)
    merged.update(spec)
    return {
        "apiVersion": "jobworker.dev/v1alpha1",
        "kind": "JobWorkerPool",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 3},
        "spec": merged,
    }


def pool(**spec: Any) -> Pool:
    return Pool.from_body(body(**spec))


def container(obj: dict[str, Any]) -> dict[str, Any]:
    """The single container of a Deployment, Job or CronJob."""
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    containers: list[dict[str, Any]] = spec["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


# ------------------------------------------------------------------------------ assertions on rendered objects

LABELS = {
    "app.kubernetes.io/name": "jobworker",
    "app.kubernetes.io/instance": "pool",
    "app.kubernetes.io/managed-by": "jobworker-operator",
    "jobworker.dev/pool": "pool",
}
QSTASH: dict[str, Any] = {
    "type": "qstash",
    "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "https://x.example/cb"},
}


def env_names(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in c["env"]}


def assert_restricted(obj: dict[str, Any]) -> None:
    ps = pod_spec(obj)
    assert ps["securityContext"]["runAsNonRoot"] is True
    assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(obj)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "emptyDir": {}} in ps["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container(obj)["volumeMounts"]


def assert_owned(obj: dict[str, Any], component: str) -> None:
    meta = obj["metadata"]
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {**LABELS, "app.kubernetes.io/component": component}
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "jobworker.dev/v1alpha1",
        "kind": "JobWorkerPool",
        "name": "pool",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
