"""render/cronjobs.py: one class per render function, each covering the defaults first."""

from __future__ import annotations

from jobworker_operator import render
from tests.operator_unit.helpers import assert_owned, assert_restricted, container, pod_spec, pool


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
