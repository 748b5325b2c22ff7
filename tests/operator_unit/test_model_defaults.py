"""Each default is written once: the CRD, the operator's model, the rendered args and files, the CLI and the
runtime settings must agree, and the operator must not pass a value the user did not set (issue 11, item 6)."""

from __future__ import annotations

import json
from typing import Any

from jobworker import cli, crontab
from jobworker.durations import parse_duration
from jobworker.settings import WorkerSettings
from jobworker.worker_utils import DEFAULT_RECOVERY_DELAY, STALE_AFTER
from jobworker_operator import model, render
from jobworker_operator.model import Pool
from tests.operator_unit.helpers import pool
from tests.operator_unit.test_model import apply_schema_defaults, crd_spec_schema


def crd_defaulted(**spec: Any) -> Pool:
    from tests.operator_unit.helpers import body

    doc = body(**spec)
    doc["spec"] = apply_schema_defaults(crd_spec_schema(), doc["spec"])
    return Pool.from_body(doc)


def worker_settings(p: Pool, env: dict[str, str] | None = None) -> WorkerSettings:
    """What `jobworker worker` runs with, given the args the operator renders (as cli.cmd_worker builds it)."""
    container = render.render_worker_deployment(p, replicas=1)["spec"]["template"]["spec"]["containers"][0]
    args = cli.build_parser().parse_args(container["args"])
    return WorkerSettings.from_env(
        env or {},
        concurrency=args.concurrency,
        poll_interval=parse_duration(args.poll_interval).total_seconds(),
        graceful_shutdown=parse_duration(args.graceful_shutdown).total_seconds(),
    )


def test_a_default_pools_workers_run_with_the_runtimes_defaults() -> None:
    ran = worker_settings(crd_defaulted())
    runtime = WorkerSettings()
    assert (ran.concurrency, ran.poll_interval, ran.graceful_shutdown) == (
        runtime.concurrency,
        runtime.poll_interval,
        runtime.graceful_shutdown,
    )


def test_jobs_concurrency_in_workers_env_is_honoured() -> None:
    p = crd_defaulted(workers={"env": [{"name": "JOBS_CONCURRENCY", "value": "7"}]})
    assert worker_settings(p, {"JOBS_CONCURRENCY": "7"}).concurrency == 7
    assert worker_settings(crd_defaulted(workers={"concurrency": 3}), {"JOBS_CONCURRENCY": "7"}).concurrency == 3


def test_the_sweep_defaults_are_the_runtimes() -> None:
    sweep = crd_defaulted().sweep
    assert parse_duration(sweep.sweep_threshold) == STALE_AFTER
    assert parse_duration(sweep.recovery_delay) == DEFAULT_RECOVERY_DELAY
    args = cli.build_parser().parse_args(["sweep-stale-workers"])
    assert parse_duration(args.sweep_threshold) == STALE_AFTER
    assert parse_duration(args.recovery_delay) == DEFAULT_RECOVERY_DELAY
    assert (model.DEFAULT_SWEEP_THRESHOLD, model.DEFAULT_RECOVERY_DELAY) == (
        sweep.sweep_threshold,
        sweep.recovery_delay,
    )


def test_a_schedule_carries_nothing_the_user_did_not_set() -> None:
    p = crd_defaulted(scheduler={"schedules": [{"id": "nightly", "task": "report", "cron": "0 3 * * *"}]})
    (entry,) = json.loads(render.render_schedules_configmap(p)["data"]["schedules.yaml"])
    assert entry == {"id": "nightly", "task": "report", "cron": "0 3 * * *"}
    parsed = crontab.parse_entry(entry, where="file")
    # None: the scheduler takes the job definition's define_job(max_attempts=..., priority=...)
    assert (parsed.max_attempts, parsed.priority, parsed.timezone) == (None, None, "UTC")


def test_no_crd_default_on_a_field_the_runtime_defaults() -> None:
    schema = crd_spec_schema()
    workers = schema["properties"]["workers"]["properties"]
    item = schema["properties"]["scheduler"]["properties"]["schedules"]["items"]["properties"]
    assert "default" not in workers["concurrency"]
    assert [k for k, v in item.items() if "default" in v] == []
    assert pool().workers.concurrency is None
