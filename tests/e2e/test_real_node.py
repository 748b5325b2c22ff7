"""Every pod the operator renders, run for real on the real kubelet node (tests/e2e/node_fixtures.py).

The operator itself runs in-cluster from the chart with the locally built image, reaching the API server
through the `kubernetes` Service. Pools use the e2e app image (built FROM the runtime image), which
records each run in public.e2e_runs; a test reads that table to see what ran, where, which attempt, and
how it ended. Nothing here is faked: kwok's node is tainted away from these pods by nodeSelector.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from node_fixtures import (
    InClusterOperator,
    NodeImages,
    NodePg,
    real_node_scheduling,
    runs,
    secret_manifest,
)
from operator_fixtures import wait_for

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
REAL_NODE = "jobworker-node"


@dataclass
class Pool:
    name: str
    namespace: str
    db_url: str  # as the host (the tests) reaches it
    kubectl: Kubectl

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def pods(self, component: str) -> list[dict[str, Any]]:
        out = self.kubectl(
            "get",
            "pods",
            "-n",
            self.namespace,
            "-l",
            f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}",
            "-o",
            "json",
        ).stdout
        return list(json.loads(out)["items"])

    def ready_pods(self, component: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(component) if _pod_ready(p) and not p["metadata"].get("deletionTimestamp")]

    def condition(self, type_: str) -> dict[str, Any] | None:
        jwp = self.get("jwp", self.name) or {}
        return next((c for c in jwp.get("status", {}).get("conditions", []) if c["type"] == type_), None)

    def wait_ready(self, timeout: float = 300) -> None:
        def ready() -> bool:
            cond = self.condition("Ready")
            return bool(cond and cond["status"] == "True")

        try:
            wait_for(f"pool {self.name} to become Ready", ready, timeout=timeout, interval=1)
        except BaseException:
            print(self.describe())
            raise

    def add(self, task: str, payload: dict[str, Any], *extra: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "jobworker", "--json", "add", task, "--payload", json.dumps(payload), *extra],
            env={**os.environ, "DATABASE_URL": self.db_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return str(json.loads(proc.stdout)["id"])

    def describe(self) -> str:
        out = self.kubectl("get", "jwp,deploy,job,cronjob,pods", "-n", self.namespace, "-o", "wide", check=False)
        events = self.kubectl("get", "events", "-n", self.namespace, "--sort-by=.lastTimestamp", check=False)
        logs = []
        for component in ("worker", "scheduler", "migrate"):
            for pod in self.pods(component) if component != "migrate" else []:
                if not _pod_ready(pod):
                    name = pod["metadata"]["name"]
                    for previous in ("--previous", ""):
                        args = ["logs", name, "-n", self.namespace, "--tail=40"] + ([previous] if previous else [])
                        log = self.kubectl(*args, check=False)
                        logs.append(f"--- {name} {previous}\n{log.stdout}{log.stderr}")
        return f"{out.stdout}\n{events.stdout[-4000:]}\n" + "\n".join(logs)


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def _jobs_left(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select count(*) from graphile_worker._private_jobs").fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
def make_pool(
    node_kubectl: Kubectl, node_operator: InClusterOperator, node_images: NodeImages, node_pg: NodePg
) -> Iterator[Callable[..., Pool]]:
    created: list[str] = []

    def _make(*, workers: dict[str, Any] | None = None, **spec: Any) -> Pool:
        name = f"p{secrets.token_hex(3)}"
        namespace = f"node-{name}"
        node_kubectl("create", "namespace", namespace)
        created.append(namespace)
        node_kubectl("wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s")
        db_url = node_pg.create_database()
        node_kubectl("apply", "-f", "-", input=secret_manifest(namespace, "db", node_pg.pod_url(db_url)))
        body = {
            "apiVersion": "jobworker.dev/v1alpha1",
            "kind": "JobWorkerPool",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "image": node_images.app,
                "imagePullPolicy": "Never",
                "tasks": "e2e_app.tasks",
                "provider": {"type": "graphile", "graphile": {"databaseUrlSecretRef": {"name": "db"}}},
                "workers": {
                    # Unset with autoscaling: the operator owns the replica count then.
                    **({} if "autoscaling" in (workers or {}) else {"replicas": 1}),
                    "pollInterval": "1s",
                    "gracefulShutdownSeconds": 20,
                    # Short, so that the sweep test can use a 15s threshold (the CRD wants 3x).
                    "heartbeatInterval": "2s",
                    **(workers or {}),
                },
                "podTemplate": real_node_scheduling(),
                **spec,
            },
        }
        node_kubectl("apply", "-f", "-", input=json.dumps(body))
        return Pool(name, namespace, db_url, node_kubectl)

    yield _make
    for namespace in created:
        node_kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# ---------------------------------------------------------------------------------------------- tests


def test_the_operator_runs_in_cluster_and_a_pool_processes_real_jobs(
    node_kubectl: Kubectl, node_operator: InClusterOperator, make_pool: Callable[..., Pool]
) -> None:
    operator_pods = json.loads(
        node_kubectl("get", "pods", "-n", node_operator.namespace, "-l", node_operator.selector, "-o", "json").stdout
    )["items"]
    assert [p["spec"]["nodeName"] for p in operator_pods] == [REAL_NODE]
    assert _pod_ready(operator_pods[0])

    # No schedules anywhere: the scheduler pod must still come up Ready (it used to exit 2).
    pool = make_pool(workers={"replicas": 2, "concurrency": 2})
    pool.wait_ready()

    # The migration Job's pod ran `jobworker migrate` for real, and workers started only after it.
    jobs = json.loads(node_kubectl("get", "jobs", "-n", pool.namespace, "-o", "json").stdout)["items"]
    migrate = [j for j in jobs if "-migrate-" in j["metadata"]["name"]]
    assert migrate and migrate[0]["status"].get("succeeded") == 1, migrate
    completed_at = migrate[0]["status"]["completionTime"]
    workers = pool.ready_pods("worker")
    assert len(workers) == 2
    assert all(p["spec"]["nodeName"] == REAL_NODE for p in workers)
    assert all(p["metadata"]["creationTimestamp"] >= completed_at for p in workers)
    with psycopg.connect(pool.db_url) as conn:
        assert conn.execute("select max(id) from graphile_worker.migrations").fetchone()[0] >= 19  # type: ignore[index]

    # Probes pass on the real endpoints: Ready with probes defined, never restarted.
    schedulers = pool.ready_pods("scheduler")
    assert len(schedulers) == 1
    assert all(p["spec"]["containers"][0].get("readinessProbe") for p in workers)
    for pod in workers + schedulers:
        container = pod["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True

    # A job enqueued from the host with `jobworker add` runs in a worker pod.
    job_id = pool.add("record", {"tag": "hello"})
    done = wait_for("the job to run in a pod", lambda: runs(pool.db_url, "hello"), timeout=60)
    assert done[0]["job_id"] == job_id and done[0]["outcome"] == "done"
    assert done[0]["pod"] in {p["metadata"]["name"] for p in workers}
    wait_for("the job to be deleted once complete", lambda: _jobs_left(pool.db_url) == 0, timeout=30)

    # /metrics of that pod, scraped through the pool's metrics Service (its endpoints), shows the job.
    service = pool.get("service", f"{pool.name}-metrics")
    assert service is not None
    port = service["spec"]["ports"][0]["port"]
    slices = json.loads(
        node_kubectl(
            "get",
            "endpointslices",
            "-n",
            pool.namespace,
            "-l",
            f"kubernetes.io/service-name={pool.name}-metrics",
            "-o",
            "json",
        ).stdout
    )["items"]
    by_pod = {
        ep["targetRef"]["name"]: ep["addresses"][0]
        for s in slices
        for ep in s.get("endpoints", [])
        if ep.get("targetRef")
    }
    address = by_pod[done[0]["pod"]]
    with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'jobworker_jobs_completed_total{task="record"} 1.0' in text

    # The operator killed and restarted: no churn in what it manages.
    deployment = pool.get("deployment", f"{pool.name}-worker")
    assert deployment is not None
    before = (deployment["metadata"]["generation"], sorted(p["metadata"]["uid"] for p in workers))
    observed = (pool.get("jwp", pool.name) or {})["status"]["queue"]["observedAt"]
    node_kubectl(
        "delete", "pods", "-n", node_operator.namespace, "-l", node_operator.selector, "--grace-period=0", "--force"
    )
    deployment_name = node_kubectl(
        "get", "deployment", "-n", node_operator.namespace, "-l", node_operator.selector, "-o", "name"
    ).stdout.strip()
    node_kubectl("rollout", "status", deployment_name, "-n", node_operator.namespace, "--timeout=180s")
    wait_for(
        "a new operator pod to be Ready",
        lambda: [
            p
            for p in json.loads(
                node_kubectl(
                    "get", "pods", "-n", node_operator.namespace, "-l", node_operator.selector, "-o", "json"
                ).stdout
            )["items"]
            if _pod_ready(p) and p["metadata"]["uid"] != operator_pods[0]["metadata"]["uid"]
        ],
        timeout=180,
    )
    # It has reconciled this pool since its start: a later queue reading than before the kill.
    wait_for(
        "the new operator to reconcile the pool",
        lambda: (pool.get("jwp", pool.name) or {})["status"]["queue"]["observedAt"] > observed,
        timeout=120,
    )
    deployment = pool.get("deployment", f"{pool.name}-worker")
    assert deployment is not None
    after = (deployment["metadata"]["generation"], sorted(p["metadata"]["uid"] for p in pool.ready_pods("worker")))
    assert after == before


def test_scale_down_returns_the_running_job_which_completes_on_the_remaining_pod(
    node_kubectl: Kubectl, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(workers={"replicas": 2, "concurrency": 1}, scheduler={"enabled": False})
    pool.wait_ready()
    assert len(pool.ready_pods("worker")) == 2
    for tag in ("a", "b"):
        pool.add("sleep", {"tag": tag, "seconds": 25})
    wait_for(
        "both jobs to start, one on each pod",
        lambda: len({r["pod"] for r in runs(pool.db_url) if r["outcome"] == "started"}) == 2,
        timeout=60,
    )
    node_kubectl("scale", f"jwp/{pool.name}", "-n", pool.namespace, "--replicas=1")

    # The kubelet sends SIGTERM to one pod; its worker hands the job back without using an attempt, and
    # the remaining pod runs it to the end after its own job.
    def interrupted_then_done() -> list[dict[str, Any]] | None:
        rows = runs(pool.db_url)
        aborted = [r for r in rows if r["outcome"] == "aborted"]
        if not aborted:
            return None
        tag = aborted[0]["tag"]
        mine = [r for r in rows if r["tag"] == tag]
        return mine if mine[-1]["outcome"] == "done" else None

    history = wait_for("the interrupted job to complete on the other pod", interrupted_then_done, timeout=150)
    assert [r["outcome"] for r in history] == ["started", "aborted", "started", "done"]
    assert [r["attempt"] for r in history] == [1, 1, 1, 1], "the interrupted run must not use an attempt"
    assert history[0]["pod"] != history[2]["pod"]
    wait_for("the queue to be empty", lambda: _jobs_left(pool.db_url) == 0, timeout=60)
    deployment = pool.get("deployment", f"{pool.name}-worker")
    assert deployment is not None and deployment["spec"]["replicas"] == 1


def test_the_scheduler_pod_enqueues_on_a_cron_tick(make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(
        scheduler={
            "schedules": [{"id": "every-minute", "task": "record", "cron": "* * * * *", "payload": {"tag": "cron"}}]
        }
    )
    pool.wait_ready()
    # At most one minute to the next tick, plus the job's run.
    rows = wait_for("a cron tick to run the job", lambda: runs(pool.db_url, "cron"), timeout=150, interval=2)
    assert rows[0]["outcome"] == "done"


def test_sweep_and_cleanup_cronjob_pods_recover_and_clean(
    node_cluster: Any, node_kubectl: Kubectl, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(
        workers={"replicas": 1, "concurrency": 1},
        scheduler={"enabled": False},
        # Never on its own schedule within the test: triggered by hand like `kubectl create job --from`.
        sweep={"schedule": "0 0 1 1 *", "sweepThreshold": "15s", "recoveryDelay": "0s"},
        cleanup={"schedule": "0 0 1 1 *", "tasks": ["delete-permanently-failed-jobs"]},
    )
    pool.wait_ready()
    pool.add("sleep", {"tag": "long", "seconds": 600})
    first = wait_for("the long job to start", lambda: runs(pool.db_url, "long"), timeout=60)[0]

    # The worker dies without any chance to hand the job back: its container is SIGKILLed on the node.
    pod = next(p for p in pool.pods("worker") if p["metadata"]["name"] == first["pod"])
    node_cluster.node.kill_container(pod["status"]["containerStatuses"][0]["containerID"])
    # Let the dead worker's heartbeat age past the threshold (the kubelet restarts the container, whose
    # new worker registers anew), then run the sweep CronJob's pod.
    wait_for(
        "the dead worker's heartbeat to go stale",
        lambda: _heartbeat_age(pool.db_url) > 16,
        timeout=90,
        interval=1,
    )
    node_kubectl("create", "job", "--from", f"cronjob/{pool.name}-sweep", "sweep-now", "-n", pool.namespace)
    node_kubectl("wait", "--for=condition=Complete", "job/sweep-now", "-n", pool.namespace, "--timeout=120s")
    again = wait_for(
        "the swept job to start again",
        lambda: runs(pool.db_url, "long")[1:],
        timeout=90,
    )
    assert again[0]["outcome"] == "started" and again[0]["job_id"] == first["job_id"]
    assert not [r for r in runs(pool.db_url, "long") if r["outcome"] != "started"], "the killed run left no end"

    # Cleanup: a permanently failed job is deleted by the cleanup CronJob's pod.
    failed_id = pool.add("record", {"tag": "never"}, "--run-at", "2999-01-01T00:00:00Z", "--max-attempts", "1")
    subprocess.run(
        [sys.executable, "-m", "jobworker", "fail", failed_id, "--reason", "e2e"],
        env={**os.environ, "DATABASE_URL": pool.db_url},
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert _job_exists(pool.db_url, failed_id)
    node_kubectl("create", "job", "--from", f"cronjob/{pool.name}-cleanup", "cleanup-now", "-n", pool.namespace)
    node_kubectl("wait", "--for=condition=Complete", "job/cleanup-now", "-n", pool.namespace, "--timeout=120s")
    assert not _job_exists(pool.db_url, failed_id)
    assert _job_exists(pool.db_url, first["job_id"]), "cleanup must not touch a running job"


def test_autoscaling_creates_real_pods_that_drain_a_backlog_then_scales_back(
    node_kubectl: Kubectl, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(
        workers={
            "concurrency": 2,
            "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "targetJobsPerReplica": 4, "scaleDownDelaySeconds": 5},
        },
        scheduler={"enabled": False},
    )
    pool.wait_ready()
    for i in range(16):
        pool.add("sleep", {"tag": f"bulk-{i}", "seconds": 3})
    wait_for("a second real worker pod", lambda: len(pool.ready_pods("worker")) == 2, timeout=120, interval=1)
    wait_for(
        "the backlog to drain",
        lambda: len([r for r in runs(pool.db_url) if r["outcome"] == "done"]) == 16,
        timeout=180,
        interval=1,
    )
    done = [r for r in runs(pool.db_url) if r["outcome"] == "done"]
    assert len({r["job_id"] for r in done}) == 16
    assert len({r["pod"] for r in done}) == 2, "both pods took part"
    wait_for(
        "the worker Deployment to scale back to 1",
        lambda: (pool.get("deployment", f"{pool.name}-worker") or {}).get("spec", {}).get("replicas") == 1,
        timeout=120,
        interval=1,
    )


def _job_exists(url: str, job_id: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return (
            conn.execute("select 1 from graphile_worker._private_jobs where id = %s", (int(job_id),)).fetchone()
            is not None
        )


def _heartbeat_age(url: str) -> float:
    """Age in seconds of the oldest worker heartbeat (a killed pod's worker stops beating)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select extract(epoch from now() - min(last_heartbeat_at)) from graphile_worker._private_workers"
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def test_a_canary_secret_never_reaches_the_pods_logs(
    node_cluster: Any, node_kubectl: Kubectl, node_operator: InClusterOperator, make_pool: Callable[..., Pool]
) -> None:
    """libpq echoes the text it cannot parse; the pods print only a fixed sentence naming the variable.

    The Secret is broken under a running pool. The worker container is then killed, so the kubelet
    restarts it with the new value, and the sweep CronJob's pod runs with it too: both print their
    error, and neither log, nor the pool's status, its events or the in-cluster operator's log may
    carry the canary.
    """
    canary = f"canary{secrets.token_hex(6)}"
    pool = make_pool(workers={"replicas": 1, "concurrency": 1}, scheduler={"enabled": False})
    pool.wait_ready()
    broken = f"postgresql://app:pw%zz{canary}@10.244.0.1:1/db"
    node_kubectl("apply", "-f", "-", input=secret_manifest(pool.namespace, "db", broken))

    pod = pool.ready_pods("worker")[0]
    name = pod["metadata"]["name"]
    node_cluster.node.kill_container(pod["status"]["containerStatuses"][0]["containerID"])
    node_kubectl("create", "job", "--from", f"cronjob/{pool.name}-sweep", "sweep-now", "-n", pool.namespace)

    def failed_sweep_pods() -> list[str]:
        out = node_kubectl("get", "pods", "-n", pool.namespace, "-l", "job-name=sweep-now", "-o", "json").stdout
        return [p["metadata"]["name"] for p in json.loads(out)["items"] if p["status"].get("phase") == "Failed"]

    sweep_pods = wait_for("the sweep pod to fail on the broken URL", failed_sweep_pods, timeout=120)

    def worker_log() -> str | None:
        text = node_kubectl("logs", name, "-n", pool.namespace, "--previous", check=False).stdout
        return text if "not a valid PostgreSQL connection string" in text else None

    wait_for("the restarted worker to print its error", worker_log, timeout=120)
    wait_for(
        "the pool to report the broken Secret",
        lambda: "not a valid PostgreSQL connection string" in ((pool.condition("Degraded") or {}).get("message", "")),
        timeout=120,
    )

    texts = {
        "worker log": node_kubectl("logs", name, "-n", pool.namespace, "--previous", check=False).stdout,
        "worker log now": node_kubectl("logs", name, "-n", pool.namespace, check=False).stdout,
        **{f"sweep pod {p}": node_kubectl("logs", p, "-n", pool.namespace, check=False).stdout for p in sweep_pods},
        "pool": json.dumps(pool.get("jwp", pool.name)),
        "events": node_kubectl("get", "events", "-n", pool.namespace, "-o", "json").stdout,
        "operator log": node_kubectl(
            "logs", "-n", node_operator.namespace, "-l", node_operator.selector, "--tail=-1", check=False
        ).stdout,
    }
    assert "not a valid PostgreSQL connection string" in texts[f"sweep pod {sweep_pods[0]}"]
    assert [where for where, text in texts.items() if canary in text] == []
