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
