"""Pieces every child shares: metadata with labels and owner reference, the restricted pod shape, DB env."""

from __future__ import annotations

from typing import Any

from jobworker_operator import names
from jobworker_operator.model import Pool, SecretKeyRef

TMP_VOLUME = "tmp"

# The image's user is not known here; a numeric uid lets the kubelet enforce runAsNonRoot even when
# the image names its user. podTemplate.securityContext may override it.
DEFAULT_RUN_AS_USER = 10001


def metadata(pool: Pool, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": pool.namespace,
        "labels": names.labels(pool.name, component),
        "ownerReferences": [owner_reference(pool)],
    }


def owner_reference(pool: Pool) -> dict[str, Any]:
    """Owner reference so that deleting the pool garbage-collects the child."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": pool.name,
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_labels(pool: Pool, component: str) -> dict[str, str]:
    # User labels first so they can never override the ones selectors rely on.
    return {**pool.pod_template.labels, **names.labels(pool.name, component)}


def pod_security_context(pool: Pool) -> dict[str, Any]:
    base: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": DEFAULT_RUN_AS_USER,
        "runAsGroup": DEFAULT_RUN_AS_USER,
        "fsGroup": DEFAULT_RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {**base, **pool.pod_template.security_context}


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def secret_env(env_name: str, ref: SecretKeyRef) -> dict[str, Any]:
    """DB URLs only ever reach pods through secretKeyRef, never inline."""
    return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def database_env(pool: Pool, *, worker: bool = False) -> list[dict[str, Any]]:
    """``DATABASE_URL`` (owner) for maintenance, ``WORKER_DATABASE_URL`` alone for workers when given."""
    if pool.graphile is None:
        return []
    env = [{"name": "JOBWORKER_SCHEMA", "value": pool.graphile.schema}]
    if worker and pool.graphile.worker_database_url is not None:
        return [*env, secret_env("WORKER_DATABASE_URL", pool.graphile.worker_database_url)]
    return [*env, secret_env("DATABASE_URL", pool.graphile.database_url)]


def container(pool: Pool, name: str, args: list[str], env: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    mounts = [{"name": TMP_VOLUME, "mountPath": "/tmp"}, *extra.pop("volumeMounts", [])]
    return {
        "name": name,
        "image": pool.image,
        "imagePullPolicy": pool.image_pull_policy,
        "args": args,
        "env": env,
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        **extra,
    }


def pod_spec(pool: Pool, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Restricted pod with a writable /tmp and the podTemplate overrides applied."""
    tpl = pool.pod_template
    volumes = [{"name": TMP_VOLUME, "emptyDir": {}}, *extra.pop("volumes", [])]
    spec: dict[str, Any] = {
        "securityContext": pod_security_context(pool),
        "containers": containers,
        "volumes": volumes,
        "automountServiceAccountToken": False,
        **extra,
    }
    if tpl.service_account_name:
        spec["serviceAccountName"] = tpl.service_account_name
    if tpl.node_selector:
        spec["nodeSelector"] = tpl.node_selector
    if tpl.tolerations:
        spec["tolerations"] = list(tpl.tolerations)
    if tpl.affinity:
        spec["affinity"] = tpl.affinity
    return spec


def pod_template(
    pool: Pool,
    component: str,
    spec: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": pod_labels(pool, component)}
    merged = {**pool.pod_template.annotations, **(annotations or {})}
    if merged:
        meta["annotations"] = merged
    return {"metadata": meta, "spec": spec}


def schedules_volume(pool: Pool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount) of the schedules ConfigMap."""
    volume = {"name": "schedules", "configMap": {"name": names.schedules_configmap(pool.name)}}
    mount = {"name": "schedules", "mountPath": names.SCHEDULES_DIR, "readOnly": True}
    return volume, mount


def schedules_path() -> str:
    return f"{names.SCHEDULES_DIR}/{names.SCHEDULES_FILE}"
