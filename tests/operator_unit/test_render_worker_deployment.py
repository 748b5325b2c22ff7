"""render/worker_deployment.py: one class per render function, each covering the defaults first."""

from __future__ import annotations

from jobworker_operator import render
from tests.operator_unit.helpers import assert_owned, assert_restricted, container, env_names, pod_spec, pool


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
