"""The sweep-stale-workers and cleanup CronJobs of a graphile pool."""

from __future__ import annotations

from typing import Any

from jobworker_operator import names
from jobworker_operator.model import Pool
from jobworker_operator.render import common

SUCCESSFUL_JOBS_HISTORY = 1
FAILED_JOBS_HISTORY = 3


def _cronjob(
    pool: Pool, name: str, component: str, schedule: str, args: list[str], starting_deadline: int
) -> dict[str, Any]:
    container = common.container(pool, component, args, common.database_env(pool))
    spec = common.pod_spec(pool, [container], restartPolicy="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": common.metadata(pool, name, component),
        "spec": {
            "schedule": schedule,
            # A slow run must never overlap the next one: both touch the same rows.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": starting_deadline,
            "successfulJobsHistoryLimit": SUCCESSFUL_JOBS_HISTORY,
            "failedJobsHistoryLimit": FAILED_JOBS_HISTORY,
            "jobTemplate": {
                "metadata": {"labels": names.labels(pool.name, component)},
                "spec": {
                    "backoffLimit": 0,
                    "template": common.pod_template(pool, component, spec),
                },
            },
        },
    }


def render_sweep_cronjob(pool: Pool) -> dict[str, Any]:
    s = pool.sweep
    args = ["sweep-stale-workers", "--sweep-threshold", s.sweep_threshold, "--recovery-delay", s.recovery_delay]
    # Missing a minute is harmless: the next run sweeps the same workers.
    return _cronjob(pool, names.sweep_cronjob(pool.name), names.SWEEP, s.schedule, args, starting_deadline=30)


def render_cleanup_cronjob(pool: Pool) -> dict[str, Any]:
    args = ["cleanup"]
    for operation in pool.cleanup.operations:
        # `--task` is the deprecated spelling of `--operation`: kept while a pool's image may still carry the
        # previous release's jobworker, which knows only `--task`; switch when the alias is removed.
        args += ["--task", operation]
    return _cronjob(
        pool, names.cleanup_cronjob(pool.name), names.CLEANUP, pool.cleanup.schedule, args, starting_deadline=3600
    )
