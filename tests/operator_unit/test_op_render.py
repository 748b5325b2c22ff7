"""One class per render function, each covering the defaults first."""

from __future__ import annotations

import json
from typing import Any

from helpers import container, pod_spec, pool

from jobworker_operator import names, render
from jobworker_operator.render import scheduler as scheduler_render

LABELS = {
    "app.kubernetes.io/name": "jobworker",
    "app.kubernetes.io/instance": "pool",
    "app.kubernetes.io/managed-by": "jobworker-operator",
    "jobworker.dev/pool": "pool",
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


class TestRenderMigrationJob:
    def test_defaults(self) -> None:
        p = pool()
        job = render.render_migration_job(p)
        assert job["metadata"]["name"] == f"pool-migrate-{p.migration_digest}"
        assert_owned(job, "migration")
        assert_restricted(job)
        assert job["spec"]["backoffLimit"] == 2
        assert job["spec"]["activeDeadlineSeconds"] == 600
        c = container(job)
        assert c["args"] == ["migrate"]
        assert c["image"] == "registry.example/app:1.0"
        env = env_names(c)
        assert env["DATABASE_URL"] == {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
        }
        assert env["JOBWORKER_SCHEMA"]["value"] == "graphile_worker"
        assert pod_spec(job)["restartPolicy"] == "Never"

    def test_exit_codes_3_and_4_fail_the_job_at_once(self) -> None:
        (rule,) = render.render_migration_job(pool())["spec"]["podFailurePolicy"]["rules"]
        assert rule["action"] == "FailJob"
        assert rule["onExitCodes"] == {"containerName": "migrate", "operator": "In", "values": [3, 4, 5]}

    def test_breaking(self) -> None:
        job = render.render_migration_job(pool(), breaking=True)
        assert job["metadata"]["name"].endswith("-b")
        assert container(job)["args"] == ["migrate", "--allow-breaking"]

    def test_pod_template_labels_reach_the_pod_but_not_override_ours(self) -> None:
        job = render.render_migration_job(
            pool(podTemplate={"labels": {"jobworker.dev/test-fail": "true", "app.kubernetes.io/component": "evil"}})
        )
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["jobworker.dev/test-fail"] == "true"
        assert labels["app.kubernetes.io/component"] == "migration"

    def test_longest_name_fits_63(self) -> None:
        p = pool()
        long = names.migrate_job("x" * names.MAX_POOL_NAME, p.migration_digest, breaking=True)
        assert len(long) <= 63


class TestRenderWorkerDeployment:
    def test_heartbeat_interval_and_sweep_threshold_reach_the_worker_when_set(self) -> None:
        # The worker fences itself at half the sweep threshold, so it must know the one the sweep uses.
        p = pool(workers={"heartbeatInterval": "5s"}, sweep={"sweepThreshold": "1m"})
        args = container(render.render_worker_deployment(p, replicas=1))["args"]
        assert args[args.index("--heartbeat-interval") + 1] == "5s"
        assert args[args.index("--sweep-threshold") + 1] == "1m"

    def test_defaults(self) -> None:
        dep = render.render_worker_deployment(pool(), replicas=1)
        assert dep["metadata"]["name"] == "pool-worker"
        assert_owned(dep, "worker")
        assert_restricted(dep)
        assert dep["spec"]["replicas"] == 1
        assert dep["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "jobworker",
            "app.kubernetes.io/instance": "pool",
            "app.kubernetes.io/component": "worker",
        }
        c = container(dep)
        assert c["args"] == [
            "worker",
            "--tasks",
            "app.tasks",
            "--poll-interval",
            "2s",
            "--graceful-shutdown",
            "30s",
            "--http-port",
            "9464",
        ]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["ports"] == [{"name": "http", "containerPort": 9464, "protocol": "TCP"}]
        assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}}
        assert pod_spec(dep)["terminationGracePeriodSeconds"] == 45
        assert "DATABASE_URL" in env_names(c)

    def test_flags_from_spec(self) -> None:
        dep = render.render_worker_deployment(
            pool(
                workers={
                    "concurrency": 8,
                    "queues": ["a", "b"],
                    "forbiddenFlags": ["slow"],
                    "pollInterval": "500ms",
                    "gracefulShutdownSeconds": 120,
                    "env": [{"name": "X", "value": "1"}],
                }
            ),
            replicas=3,
        )
        c = container(dep)
        assert c["args"][:5] == ["worker", "--tasks", "app.tasks", "--concurrency", "8"]
        assert c["args"][5:11] == ["--queue", "a", "--queue", "b", "--forbidden-flag", "slow"]
        assert "500ms" in c["args"] and "120s" in c["args"]
        assert env_names(c)["X"] == {"name": "X", "value": "1"}
        assert pod_spec(dep)["terminationGracePeriodSeconds"] == 135
        assert dep["spec"]["replicas"] == 3

    def test_worker_url_replaces_owner_url(self) -> None:
        p = pool(
            provider={
                "type": "graphile",
                "graphile": {
                    "databaseUrlSecretRef": {"name": "db"},
                    "workerDatabaseUrlSecretRef": {"name": "wdb", "key": "u"},
                },
            }
        )
        env = env_names(container(render.render_worker_deployment(p, replicas=1)))
        assert "DATABASE_URL" not in env
        assert env["WORKER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "wdb", "key": "u"}

    def test_no_url_is_ever_inline(self) -> None:
        text = json.dumps(
            render.children(pool(), frozenset({"worker", "scheduler", "sweep", "cleanup"}), worker_replicas=1)
        )
        assert "postgres://" not in text

    def test_pod_template_overrides(self) -> None:
        dep = render.render_worker_deployment(
            pool(
                podTemplate={
                    "nodeSelector": {"a": "b"},
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                    "affinity": {"nodeAffinity": {}},
                    "serviceAccountName": "sa",
                    "securityContext": {"runAsUser": 1234},
                    "annotations": {"x": "y"},
                }
            ),
            replicas=1,
        )
        ps = pod_spec(dep)
        assert ps["nodeSelector"] == {"a": "b"}
        assert ps["tolerations"] == [{"key": "k", "operator": "Exists"}]
        assert ps["affinity"] == {"nodeAffinity": {}}
        assert ps["serviceAccountName"] == "sa"
        assert ps["securityContext"]["runAsUser"] == 1234
        assert ps["securityContext"]["runAsNonRoot"] is True
        assert dep["spec"]["template"]["metadata"]["annotations"] == {"x": "y"}


class TestRenderSchedulesConfigmap:
    def test_defaults_empty_list(self) -> None:
        cm = render.render_schedules_configmap(pool())
        assert cm["metadata"]["name"] == "pool-schedules"
        assert_owned(cm, "scheduler")
        assert json.loads(cm["data"]["schedules.yaml"]) == []

    def test_snake_case_entries_with_only_what_was_set(self) -> None:
        cm = render.render_schedules_configmap(
            pool(
                scheduler={
                    "schedules": [
                        {"id": "nightly", "task": "report", "cron": "0 1 * * *", "maxAttempts": 3, "jobKey": "k"}
                    ]
                }
            )
        )
        (entry,) = json.loads(cm["data"]["schedules.yaml"])
        # Nothing the pool did not set: define_job's priority, the scheduler's UTC and replace still apply.
        assert entry == {"id": "nightly", "task": "report", "cron": "0 1 * * *", "max_attempts": 3, "job_key": "k"}


class TestRenderSchedulerDeployment:
    def test_defaults(self) -> None:
        dep = render.render_scheduler_deployment(pool())
        assert dep["metadata"]["name"] == "pool-scheduler"
        assert_owned(dep, "scheduler")
        assert_restricted(dep)
        assert dep["spec"]["replicas"] == 1
        assert dep["spec"]["strategy"] == {"type": "Recreate"}
        assert container(dep)["args"] == [
            "scheduler",
            "--tasks",
            "app.tasks",
            "--schedules",
            "/etc/jobworker/schedules.yaml",
            "--http-port",
            "9464",
        ]
        assert {"name": "schedules", "configMap": {"name": "pool-schedules"}} in pod_spec(dep)["volumes"]

    def test_checksum_rolls_pods_when_schedules_change(self) -> None:
        def checksum(**spec: Any) -> str:
            dep = render.render_scheduler_deployment(pool(**spec))
            return str(dep["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_SCHEDULES_CHECKSUM])

        one = {"schedules": [{"id": "a", "task": "t", "cron": "* * * * *"}]}
        assert checksum() != checksum(scheduler=one)
        assert checksum(scheduler=one) == scheduler_render.schedules_checksum(pool(scheduler=one))


class TestRenderSweepCronjob:
    def test_defaults(self) -> None:
        cj = render.render_sweep_cronjob(pool())
        assert cj["metadata"]["name"] == "pool-sweep"
        assert_owned(cj, "sweep")
        assert_restricted(cj)
        assert cj["spec"]["schedule"] == "* * * * *"
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        assert cj["spec"]["successfulJobsHistoryLimit"] == 1
        assert cj["spec"]["failedJobsHistoryLimit"] == 3
        assert container(cj)["args"] == ["sweep-stale-workers", "--sweep-threshold", "5m", "--recovery-delay", "0s"]
        assert pod_spec(cj)["restartPolicy"] == "Never"


class TestRenderCleanupCronjob:
    def test_defaults(self) -> None:
        cj = render.render_cleanup_cronjob(pool())
        assert cj["metadata"]["name"] == "pool-cleanup"
        assert_owned(cj, "cleanup")
        assert cj["spec"]["schedule"] == "0 3 * * *"
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        assert container(cj)["args"] == ["cleanup", "--task", "gc-task-identifiers", "--task", "gc-job-queues"]


QSTASH = {"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "https://x.example/cb"}}


class TestRenderReceiverDeployment:
    def test_defaults(self) -> None:
        dep = render.render_receiver_deployment(pool(provider=QSTASH), replicas=1)
        assert dep["metadata"]["name"] == "pool-receiver"
        assert_owned(dep, "receiver")
        assert_restricted(dep)
        c = container(dep)
        assert c["args"] == ["serve", "--tasks", "app.tasks", "--port", "8080"]
        assert c["envFrom"] == [{"secretRef": {"name": "qs"}}]
        assert env_names(c)["QSTASH_CALLBACK_URL"]["value"] == "https://x.example/cb"
        assert "DATABASE_URL" not in env_names(c)


class TestRenderReceiverService:
    def test_defaults(self) -> None:
        svc = render.render_receiver_service(pool(provider=QSTASH))
        assert svc["metadata"]["name"] == "pool-receiver"
        assert_owned(svc, "receiver")
        assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


class TestRenderScheduleSyncJob:
    def test_defaults(self) -> None:
        job = render.render_schedule_sync_job(pool(provider=QSTASH))
        assert job["metadata"]["name"].startswith("pool-sync-")
        assert container(job)["args"] == [
            "qstash",
            "sync-schedules",
            "--tasks",
            "app.tasks",
            "--schedules",
            "/etc/jobworker/schedules.yaml",
        ]

    def test_name_changes_with_schedules(self) -> None:
        a = render.render_schedule_sync_job(pool(provider=QSTASH))
        b = render.render_schedule_sync_job(
            pool(provider=QSTASH, scheduler={"schedules": [{"id": "a", "task": "t", "cron": "* * * * *"}]})
        )
        assert a["metadata"]["name"] != b["metadata"]["name"]


class TestRenderMetricsService:
    def test_defaults(self) -> None:
        svc = render.render_metrics_service(pool())
        assert svc["metadata"]["name"] == "pool-metrics"
        assert_owned(svc, "metrics")
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "worker"
        assert svc["spec"]["ports"][0]["port"] == 9464


class TestRenderServiceMonitor:
    def test_defaults(self) -> None:
        sm = render.render_service_monitor(pool())
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        endpoint = sm["spec"]["endpoints"][0]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
        assert endpoint["relabelings"] == [
            {"sourceLabels": ["__meta_kubernetes_pod_label_jobworker_dev_pool"], "targetLabel": "pool"}
        ]
        assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"


class TestChildren:
    def test_graphile_defaults(self) -> None:
        from jobworker_operator import plan

        p = pool()
        kinds = [(o["kind"], o["metadata"]["name"]) for o in render.children(p, plan.components(p), worker_replicas=1)]
        assert kinds == [
            ("ConfigMap", "pool-schedules"),
            ("Deployment", "pool-scheduler"),
            ("Deployment", "pool-worker"),
            ("CronJob", "pool-sweep"),
            ("CronJob", "pool-cleanup"),
            ("Service", "pool-metrics"),
        ]

    def test_qstash(self) -> None:
        from jobworker_operator import plan

        p = pool(provider=QSTASH)
        kinds = [o["kind"] for o in render.children(p, plan.components(p), worker_replicas=2)]
        assert kinds == ["ConfigMap", "Job", "Deployment", "Service"]

    def test_service_monitor_opt_in(self) -> None:
        from jobworker_operator import plan

        p = pool(metrics={"serviceMonitor": True})
        kinds = [o["kind"] for o in render.children(p, plan.components(p), worker_replicas=1)]
        assert "ServiceMonitor" in kinds
