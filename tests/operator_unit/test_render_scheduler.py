"""render/scheduler.py: one class per render function, each covering the defaults first."""

from __future__ import annotations

import json
from typing import Any

from jobworker_operator import names, render
from jobworker_operator.render import scheduler as scheduler_render
from tests.operator_unit.helpers import assert_owned, assert_restricted, container, pod_spec, pool


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
