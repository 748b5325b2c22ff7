"""render/receiver.py: one class per render function, each covering the defaults first."""

from __future__ import annotations

from jobworker_operator import render
from tests.operator_unit.helpers import QSTASH, assert_owned, assert_restricted, container, env_names, pool


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
