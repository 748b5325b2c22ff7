"""The operator against the real local control plane (kwok nodes), running with the chart's RBAC.

Run: .venv/bin/pytest tests/e2e/test_operator.py -v   (needs the binaries of hack/build-k8s.sh)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from operator_fixtures import OperatorProcess, secret_manifest, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_V1 = "registry.example/jobworker-app:1.0"
IMAGE_V2 = "registry.example/jobworker-app:2.0"
TIMEOUT = 120


# --------------------------------------------------------------------------------------------- helpers


def manifest(namespace: str, name: str, **spec: Any) -> str:
    body: dict[str, Any] = {
        "image": IMAGE_V1,
        "tasks": "app.tasks",
        "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
        "migration": {"backoffLimit": 0},
    }
    body.update(spec)
    return json.dumps(
        {
            "apiVersion": "jobworker.dev/v1alpha1",
            "kind": "JobWorkerPool",
            "metadata": {"name": name, "namespace": namespace},
            "spec": body,
        }
    )


def get(kubectl: Any, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = kubectl("get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def condition(pool: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((pool or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def create_db_secret(kubectl: Any, namespace: str, url: str, name: str = "db") -> None:
    kubectl("apply", "-f", "-", input=secret_manifest(namespace, name, url))


def ready_pool(kubectl: Any, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    kubectl("apply", "-f", "-", input=manifest(namespace, name, **spec))

    def is_ready() -> dict[str, Any] | None:
        pool = get(kubectl, namespace, "jwp", name)
        return pool if condition(pool, "Ready").get("status") == "True" else None

    return dict(wait_for(f"pool {name} Ready", is_ready, timeout=TIMEOUT))


def image_of(deployment: dict[str, Any] | None) -> str | None:
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def children(kubectl: Any, namespace: str, pool: str) -> list[str]:
    out = kubectl(
        "get",
        "deployments,jobs,cronjobs,configmaps,services",
        "-n",
        namespace,
        "-l",
        f"jobworker.dev/pool={pool}",
        "-o",
        "name",
    ).stdout
    return sorted(out.split())


# ---------------------------------------------------------------------------------------------- tests


BAD_SPECS = [
    ({"scheduler": {"schedules": [{"id": "a", "task": "t", "cron": "* * *"}]}}, "cron must have 5 fields"),
    (
        {
            "scheduler": {
                "schedules": [
                    {"id": "a", "task": "t", "cron": "* * * * *"},
                    {"id": "a", "task": "u", "cron": "0 * * * *"},
                ]
            }
        },
        "scheduler.schedules ids must be unique",
    ),
    ({"workers": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas must not exceed maxReplicas"),
    (
        {"workers": {"replicas": 2, "autoscaling": {"maxReplicas": 4}}},
        "workers.replicas must be unset when workers.autoscaling is set",
    ),
    (
        {"provider": {"type": "qstash", "graphile": {"databaseUrlSecretRef": {"name": "db"}}}},
        "provider.qstash is required when provider.type is qstash",
    ),
    (
        {"provider": {"type": "noop", "graphile": {"databaseUrlSecretRef": {"name": "db"}}}},
        "provider.graphile is only allowed when provider.type is graphile",
    ),
    ({"provider": {"type": "graphile"}}, "provider.graphile is required when provider.type is graphile"),
    ({"workers": {"concurrency": 0}}, "workers.concurrency must be at least 1"),
    (
        {"workers": {"env": [{"name": "DATABASE_URL", "value": "postgresql://elsewhere/db"}]}},
        "workers.env must not set DATABASE_URL",
    ),
    ({"workers": {"pollInterval": "2 seconds"}}, "must be a duration such as 500ms"),
    ({"sweep": {"sweepThreshold": "5x"}}, "must be a duration such as 500ms"),
    (
        {"workers": {"heartbeatInterval": "1m"}, "sweep": {"sweepThreshold": "2m"}},
        "sweep.sweepThreshold must be at least 3x workers.heartbeatInterval",
    ),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_bad_specs_are_rejected_with_their_cel_message(
    kubectl: Any, jwp_crd: str, namespace: str, spec: dict[str, Any], message: str
) -> None:
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest(namespace, "bad", **spec), check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr


def test_long_pool_name_is_rejected(kubectl: Any, jwp_crd: str, namespace: str) -> None:
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest(namespace, "p" * 41), check=False)
    assert "at most 40 characters" in proc.stderr


@pytest.mark.parametrize("name", ["my.pool", "1pool"])
def test_pool_name_must_be_a_dns_label(kubectl: Any, jwp_crd: str, namespace: str, name: str) -> None:
    # Children such as <pool>-metrics are Services, whose names must be DNS-1035 labels.
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest(namespace, name), check=False)
    assert proc.returncode != 0, proc.stdout
    assert "must start with a lowercase letter" in proc.stderr


def test_examples_are_valid(kubectl: Any, jwp_crd: str, namespace: str) -> None:
    for path in sorted((REPO_ROOT / "examples").glob("pool*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["metadata"]["namespace"] = namespace
                kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(doc))


def test_pool_lifecycle(kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str) -> None:
    """create → migrate → Deployments available → CronJobs → conditions; new image migrates first."""
    create_db_secret(kubectl, namespace, pool_database)
    pool = ready_pool(
        kubectl, namespace, "life", scheduler={"schedules": [{"id": "tick", "task": "tick", "cron": "*/5 * * * *"}]}
    )

    status = pool["status"]
    assert condition(pool, "Migrated")["status"] == "True"
    assert condition(pool, "Degraded")["status"] == "False", condition(pool, "Degraded")
    assert condition(pool, "Ready")["observedGeneration"] == pool["metadata"]["generation"]
    digest = status["migration"]["digest"]
    job = get(kubectl, namespace, "job", f"life-migrate-{digest}")
    assert job is not None and job["status"].get("succeeded") == 1

    worker = get(kubectl, namespace, "deployment", "life-worker")
    scheduler = get(kubectl, namespace, "deployment", "life-scheduler")
    assert worker is not None and scheduler is not None
    assert worker["status"].get("availableReplicas") == 1
    for child in (worker, scheduler, job):
        meta = child["metadata"]
        assert meta["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "jobworker-operator"
        assert meta["labels"]["jobworker.dev/pool"] == "life"
    assert "jobworker-operator" in {m["manager"] for m in worker["metadata"]["managedFields"]}

    for name, schedule in (("life-sweep", "* * * * *"), ("life-cleanup", "0 3 * * *")):
        cronjob = get(kubectl, namespace, "cronjob", name)
        assert cronjob is not None
        assert cronjob["spec"]["schedule"] == schedule
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    schedules = json.loads(get(kubectl, namespace, "configmap", "life-schedules")["data"]["schedules.yaml"])  # type: ignore[index]
    assert schedules[0]["id"] == "tick"

    # Queue stats come from the pool's real database.
    def with_queue() -> dict[str, Any] | None:
        st = (get(kubectl, namespace, "jwp", "life") or {}).get("status", {})
        return st if st.get("queue") and st.get("schemaVersion") else None

    queued = wait_for("status.queue and schemaVersion", with_queue)
    assert queued["queue"]["ready"] == 0 and queued["schemaVersion"] >= 19
    assert status["selector"] == (
        "app.kubernetes.io/name=jobworker,app.kubernetes.io/instance=life,app.kubernetes.io/component=worker"
    )
    assert "graphile" in kubectl("get", "jwp", "life", "-n", namespace).stdout

    # A new image: a new migration Job completes before the Deployment rolls to that image.
    kubectl("patch", "jwp", "life", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"image": IMAGE_V2}}))

    def rolled() -> dict[str, Any] | None:
        dep = get(kubectl, namespace, "deployment", "life-worker")
        return dep if image_of(dep) == IMAGE_V2 else None

    wait_for("the worker Deployment on the new image", rolled, timeout=TIMEOUT)
    pool = get(kubectl, namespace, "jwp", "life") or {}
    new_digest = pool["status"]["migration"]["digest"]
    assert new_digest != digest
    new_job = get(kubectl, namespace, "job", f"life-migrate-{new_digest}")
    assert new_job is not None and new_job["status"].get("succeeded") == 1
    replica_sets = json.loads(
        kubectl("get", "rs", "-n", namespace, "-l", "app.kubernetes.io/component=worker", "-o", "json").stdout
    )["items"]
    new_rs = [rs for rs in replica_sets if image_of(rs) == IMAGE_V2]
    assert new_rs and new_rs[0]["metadata"]["creationTimestamp"] >= new_job["status"]["completionTime"]
    # The old migration Job is cleaned up once the new one succeeded.
    wait_for("old migration Job removed", lambda: get(kubectl, namespace, "job", f"life-migrate-{digest}") is None)


def test_failed_migration_is_degraded_and_keeps_old_workers(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(kubectl, namespace, "fail")
    before = get(kubectl, namespace, "deployment", "fail-worker")
    assert before is not None and image_of(before) == IMAGE_V1

    # kwok fails pods labelled jobworker.dev/test-fail=true; podTemplate.labels puts it on the migration pod.
    patch = {"spec": {"image": IMAGE_V2, "podTemplate": {"labels": {"jobworker.dev/test-fail": "true"}}}}
    kubectl("patch", "jwp", "fail", "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def degraded() -> dict[str, Any] | None:
        pool = get(kubectl, namespace, "jwp", "fail")
        return pool if condition(pool, "Degraded").get("status") == "True" else None

    pool = wait_for("Degraded after the failed migration", degraded, timeout=TIMEOUT)
    degraded_cond = condition(pool, "Degraded")
    assert degraded_cond["reason"] == "BackoffLimitExceeded", degraded_cond
    assert "migrate" in degraded_cond["message"]
    assert condition(pool, "Migrated")["status"] == "False"
    after = get(kubectl, namespace, "deployment", "fail-worker")
    assert after is not None
    assert image_of(after) == IMAGE_V1
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"].get("availableReplicas") == 1


def test_kubectl_scale_reaches_the_deployment(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(kubectl, namespace, "scale", scheduler={"enabled": False})
    kubectl("scale", "jwp", "scale", "-n", namespace, "--replicas=3")
    wait_for(
        "Deployment replicas 3",
        lambda: (get(kubectl, namespace, "deployment", "scale-worker") or {}).get("spec", {}).get("replicas") == 3,
    )
    wait_for(
        "status.replicas 3 through the scale subresource",
        lambda: (
            json.loads(kubectl("get", "jwp", "scale", "-n", namespace, "--subresource=scale", "-o", "json").stdout)
            .get("status", {})
            .get("replicas")
            == 3
        ),
        timeout=TIMEOUT,
    )
    scale = json.loads(kubectl("get", "jwp", "scale", "-n", namespace, "--subresource=scale", "-o", "json").stdout)
    assert scale["spec"]["replicas"] == 3
    assert "app.kubernetes.io/component=worker" in scale["status"]["selector"]


def test_hand_deleted_or_edited_children_are_restored(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(kubectl, namespace, "heal")
    old_uid = get(kubectl, namespace, "deployment", "heal-worker")["metadata"]["uid"]  # type: ignore[index]
    kubectl("delete", "deployment", "heal-worker", "-n", namespace, "--wait=false")
    wait_for(
        "worker Deployment recreated",
        lambda: (
            (get(kubectl, namespace, "deployment", "heal-worker") or {}).get("metadata", {}).get("uid")
            not in (None, old_uid)
        ),
    )

    kubectl(
        "patch",
        "cronjob",
        "heal-sweep",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"schedule": "*/7 * * * *"}}),
    )
    wait_for(
        "CronJob schedule restored",
        lambda: (get(kubectl, namespace, "cronjob", "heal-sweep") or {}).get("spec", {}).get("schedule") == "* * * * *",
    )

    kubectl("delete", "configmap", "heal-schedules", "-n", namespace)
    wait_for("ConfigMap recreated", lambda: get(kubectl, namespace, "configmap", "heal-schedules") is not None)


def test_deleting_the_pool_removes_every_child(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(kubectl, namespace, "gone")
    assert len(children(kubectl, namespace, "gone")) >= 6
    kubectl("delete", "jwp", "gone", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for("children garbage-collected", lambda: children(kubectl, namespace, "gone") == [], timeout=TIMEOUT)


def test_noop_pool_has_no_children_and_is_ready(kubectl: Any, operator: OperatorProcess, namespace: str) -> None:
    pool = ready_pool(kubectl, namespace, "nothing", provider={"type": "noop"})
    assert condition(pool, "Ready")["reason"] == "NoopProvider"
    assert "noop" in condition(pool, "Ready")["message"]
    assert children(kubectl, namespace, "nothing") == []


def test_qstash_pool_runs_a_receiver_and_syncs_schedules(
    kubectl: Any, operator: OperatorProcess, namespace: str
) -> None:
    kubectl("create", "secret", "generic", "qs", "-n", namespace, "--from-literal=QSTASH_TOKEN=t")
    ready_pool(
        kubectl,
        namespace,
        "push",
        provider={"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "https://push.example/cb"}},
    )
    names = children(kubectl, namespace, "push")
    assert "deployment.apps/push-receiver" in names
    assert "service/push-receiver" in names
    assert any(n.startswith("job.batch/push-sync-") for n in names)
    assert not any("migrate" in n or "worker" in n or "cronjob" in n for n in names)


def test_unreachable_database_is_degraded_and_the_operator_survives(
    kubectl: Any, operator: OperatorProcess, namespace: str
) -> None:
    create_db_secret(kubectl, namespace, "postgresql://nobody:secret@127.0.0.1:1/none")
    kubectl("apply", "-f", "-", input=manifest(namespace, "nodb", migration={"enabled": False}))

    def degraded() -> dict[str, Any] | None:
        cond = condition(get(kubectl, namespace, "jwp", "nodb"), "Degraded")
        return cond if cond.get("status") == "True" else None

    cond = wait_for("Degraded: database unreachable", degraded, timeout=TIMEOUT)
    assert "database unreachable" in cond["message"]
    assert "secret" not in cond["message"]  # the password never reaches status
    assert operator.alive()
    assert operator.http_status("healthz", operator.liveness_port) == 200


def test_autoscaling_follows_queue_depth(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(
        kubectl,
        namespace,
        "auto",
        scheduler={"enabled": False},
        workers={
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetJobsPerReplica": 5, "scaleDownDelaySeconds": 3}
        },
    )

    def replicas() -> int:
        return int((get(kubectl, namespace, "deployment", "auto-worker") or {}).get("spec", {}).get("replicas", -1))

    assert replicas() == 1
    with psycopg.connect(pool_database, autocommit=True) as conn:
        conn.execute("select graphile_worker.add_job('autoscale_me', '{}'::json) from generate_series(1, 13)")
    wait_for("3 replicas for 13 ready jobs", lambda: replicas() == 3, timeout=TIMEOUT)
    pool = get(kubectl, namespace, "jwp", "auto") or {}
    assert pool["status"]["queue"]["ready"] == 13
    assert pool["status"]["autoscaling"]["replicas"] == 3
    assert (
        operator.metric("jobworker_queue_jobs", namespace=namespace, pool="auto", task="autoscale_me", state="ready")
        == 13
    )
    assert (operator.metric("jobworker_pool_reconcile_total", namespace=namespace, pool="auto") or 0) > 0

    with psycopg.connect(pool_database, autocommit=True) as conn:
        conn.execute("select graphile_worker.add_job('autoscale_me', '{}'::json) from generate_series(1, 30)")
    wait_for("capped at maxReplicas 4", lambda: replicas() == 4, timeout=TIMEOUT)

    with psycopg.connect(pool_database, autocommit=True) as conn:
        conn.execute("delete from graphile_worker._private_jobs")
    wait_for("back to minReplicas after the scale-down delay", lambda: replicas() == 1, timeout=TIMEOUT)


def test_operator_restart_adopts_children_without_churn(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(kubectl, namespace, "adopt")

    def versions() -> dict[str, tuple[str, Any]]:
        items = json.loads(
            kubectl(
                "get",
                "deployments,cronjobs,configmaps,services",
                "-n",
                namespace,
                "-l",
                "jobworker.dev/pool=adopt",
                "-o",
                "json",
            ).stdout
        )["items"]
        return {
            f"{i['kind']}/{i['metadata']['name']}": (
                i["metadata"]["resourceVersion"] if i["kind"] in ("ConfigMap", "Service") else "-",
                i["metadata"].get("generation"),
            )
            for i in items
        }

    def reconciles() -> float:
        return operator.metric("jobworker_pool_reconcile_total", namespace=namespace, pool="adopt") or 0

    def unchanged_over_two_passes() -> dict[str, tuple[str, Any]] | None:
        # Settled means the operator's own passes change nothing: two reads a few milliseconds apart
        # agree even while a rollout is still bumping generations between passes.
        start, passes = versions(), reconciles()
        wait_for("two more reconcile passes", lambda: reconciles() >= passes + 2, timeout=TIMEOUT)
        end = versions()
        return end if end == start else None

    before = wait_for("children unchanged across two reconcile passes", unchanged_over_two_passes, timeout=TIMEOUT)
    operator.restart()
    # Several resync passes of the new process over this pool.
    wait_for(
        "reconciles after the restart",
        lambda: (operator.metric("jobworker_pool_reconcile_total", namespace=namespace, pool="adopt") or 0) >= 3,
        timeout=TIMEOUT,
    )
    assert versions() == before
    pool = get(kubectl, namespace, "jwp", "adopt")
    assert condition(pool, "Ready")["status"] == "True"


def test_a_namespaced_operator_leaves_other_namespaces_alone(
    kubectl: Any, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    other = f"{namespace}-other"
    kubectl("create", "namespace", other)
    operator.stop()  # one operator at a time: the shared one watches every namespace
    scoped = OperatorProcess(operator.kubeconfig, tmp_path / "scoped.log", scope=("--namespace", namespace))
    try:
        scoped.start()
        kubectl("apply", "-f", "-", input=manifest(other, "outside", provider={"type": "noop"}))
        ready_pool(kubectl, namespace, "inside", provider={"type": "noop"})
        # Created after "outside": once this one is Ready, the operator has had its chance at "outside" too.
        ready_pool(kubectl, namespace, "inside-later", provider={"type": "noop"})
        assert not (get(kubectl, other, "jwp", "outside") or {}).get("status"), scoped.log_tail()
    finally:
        scoped.stop()
        operator.start()
    try:
        wait_for(
            "the all-namespaces operator to take the other namespace's pool",
            lambda: condition(get(kubectl, other, "jwp", "outside"), "Ready").get("status") == "True",
            timeout=TIMEOUT,
        )
    finally:
        kubectl("delete", "namespace", other, "--wait=false")
