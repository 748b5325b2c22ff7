"""Bad input gets a clear error naming the field and leaves the queue untouched; odd text is stored literally."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest

from jobworker import errors
from jobworker.jobs import JobContext, define_job
from jobworker.models import JobSpec
from jobworker.worker_utils import WorkerUtils
from tests.integration.runtime import fetch, job_rows, make_worker


async def snapshot(url: str) -> tuple[Any, ...]:
    """Everything an add could have written: jobs, task names and queue names."""
    jobs = await fetch(url, "select id, key, payload::text from graphile_worker._private_jobs order by id")
    tasks = await fetch(url, "select identifier from graphile_worker._private_tasks order by id")
    queues = await fetch(url, "select queue_name from graphile_worker._private_job_queues order by id")
    return jobs, tasks, queues


@pytest.fixture
async def existing(utils: WorkerUtils, db_url: str) -> tuple[Any, ...]:
    """One job already queued, so 'untouched' means more than 'still empty'."""
    await utils.add_job("existing", {"n": 1}, job_key="existing", queue_name="existing_q")
    return await snapshot(db_url)


BAD_ADDS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("object payload", {"payload": {"when": object()}}, errors.InvalidPayloadError, "payload: not JSON-serialisable"),
    ("set payload", {"payload": {"ids": {1, 2}}}, errors.InvalidPayloadError, "payload: not JSON-serialisable"),
    ("NaN payload", {"payload": {"x": math.nan}}, errors.InvalidPayloadError, "payload: not JSON-serialisable"),
    ("long job key", {"job_key": "k" * 513}, errors.ConfigurationError, "job_key: 513 characters"),
    ("empty job key", {"job_key": ""}, errors.ConfigurationError, "job_key: must be a non-empty string"),
    ("long task", {"task": "t" * 129}, errors.ConfigurationError, "task: 129 characters"),
    ("empty task", {"task": ""}, errors.ConfigurationError, "task: must be a non-empty string"),
    ("long queue", {"queue_name": "q" * 129}, errors.ConfigurationError, "queue_name: 129 characters"),
    ("zero attempts", {"max_attempts": 0}, errors.ConfigurationError, "max_attempts: 0 must be"),
    ("negative attempts", {"max_attempts": -3}, errors.ConfigurationError, "max_attempts: -3 must be"),
    ("bool attempts", {"max_attempts": True}, errors.ConfigurationError, "max_attempts: True must be"),
    ("huge attempts", {"max_attempts": 40_000}, errors.ConfigurationError, "max_attempts: 40000 must be"),
    ("huge priority", {"priority": 40_000}, errors.ConfigurationError, "priority: 40000 must be"),
    ("unknown mode", {"job_key": "k", "job_key_mode": "skip"}, errors.ConfigurationError, "job_key_mode: 'skip' is"),
    ("flags as a string", {"flags": "gpu"}, errors.ConfigurationError, "flags: must be a list"),
    ("empty flag", {"flags": ["ok", ""]}, errors.ConfigurationError, "flags: must be a list"),
]


@pytest.mark.parametrize(("case", "options", "error", "message"), BAD_ADDS, ids=[c[0] for c in BAD_ADDS])
async def test_bad_add_job_is_refused_and_changes_nothing(
    utils: WorkerUtils,
    db_url: str,
    existing: tuple[Any, ...],
    case: str,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    options = dict(options)
    task = options.pop("task", "a_task")
    payload = options.pop("payload", None)

    with pytest.raises(error) as caught:
        await utils.add_job(task, payload, **options)

    assert str(caught.value).startswith(message)
    assert await snapshot(db_url) == existing


async def test_one_bad_spec_refuses_the_whole_bulk_add(
    utils: WorkerUtils, db_url: str, existing: tuple[Any, ...]
) -> None:
    specs = [JobSpec(task="fine", payload={"n": i}) for i in range(5)]
    specs.append(JobSpec(task="fine", max_attempts=0))
    with pytest.raises(errors.ConfigurationError, match="max_attempts: 0"):
        await utils.add_jobs(specs)
    with pytest.raises(errors.InvalidPayloadError, match="payload"):
        await utils.add_jobs([JobSpec(task="fine"), JobSpec(task="fine", payload={"x": object()})])
    assert await snapshot(db_url) == existing


async def test_limits_are_inclusive(utils: WorkerUtils, db_url: str) -> None:
    added = await utils.add_job("t" * 128, job_key="k" * 512, queue_name="q" * 128, max_attempts=1, priority=-32768)
    [row] = await job_rows(db_url)
    assert row["id"] == added.id
    assert (len(row["task_identifier"]), len(row["key"]), len(row["queue_name"])) == (128, 512, 128)


SQL_CONSTRAINTS = [
    ("select graphile_worker.add_job(repeat('t', 129))", "_private_tasks_identifier_check"),
    ("select graphile_worker.add_job('t', queue_name => repeat('q', 129))", "_private_job_queues_queue_name_check"),
    ("select graphile_worker.add_job('t', max_attempts => 0)", "jobs_max_attempts_check"),
    ("select graphile_worker.add_job('t', job_key => '')", "jobs_key_check"),
    ("select graphile_worker.add_job('t', payload => '{not json'::json)", "invalid input syntax for type json"),
]


@pytest.mark.parametrize(("query", "message"), SQL_CONSTRAINTS, ids=[m for _, m in SQL_CONSTRAINTS])
async def test_the_database_refuses_the_same_input_from_any_producer(
    db_url: str, existing: tuple[Any, ...], query: Any, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message):
        await fetch(db_url, query)
    assert await snapshot(db_url) == existing


NASTY_TASK = "t'; drop table graphile_worker._private_jobs; --"
NASTY_QUEUE = 'q"; select pg_sleep(10); --'
NASTY_KEY = "k %s %(x)s ' \" ; \\ $$ $1 -- /*"
NASTY_PAYLOAD = {"text": "'); delete from graphile_worker._private_jobs; --", "pct": "%s %(id)s", "nul-free": "\\x00"}


async def test_sql_metacharacters_are_stored_literally(utils: WorkerUtils, db_url: str) -> None:
    ran: list[dict[str, Any]] = []

    @define_job(NASTY_TASK, payload=dict)
    async def nasty(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload)

    added = await utils.add_job(NASTY_TASK, NASTY_PAYLOAD, queue_name=NASTY_QUEUE, job_key=NASTY_KEY)
    again = await utils.add_job(NASTY_TASK, NASTY_PAYLOAD, queue_name=NASTY_QUEUE, job_key=NASTY_KEY)
    assert again.id == added.id

    [row] = await job_rows(db_url)
    assert (row["task_identifier"], row["queue_name"], row["key"]) == (NASTY_TASK, NASTY_QUEUE, NASTY_KEY)
    assert row["payload"] == NASTY_PAYLOAD
    assert [j.key for j in await utils.list_jobs(task=NASTY_TASK, queue_name=NASTY_QUEUE)] == [NASTY_KEY]

    assert await make_worker(db_url, nasty).run_once() == 1
    assert ran == [NASTY_PAYLOAD]

    await utils.add_job(NASTY_TASK, job_key=NASTY_KEY)
    assert await utils.remove_job(NASTY_KEY) is not None
    assert await job_rows(db_url) == []
