"""One queue, two runtimes: jobworker and the real graphile-worker 0.17.3 from npm."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from jobworker import sql as sql_files
from tests.acceptance.conftest import NodeEnv, Spawn
from tests.acceptance.helpers import TASKS, Process, done_counts, effects, eventually, jobs, jobworker, sql

OWN_IDS = [n for n, _ in sql_files.migration_files()["jobworker"]]
OWN = [f"jobworker {n}" for n in OWN_IDS]
"""jobworker's own migrations (ids, and as ``migrate`` reports them), from the files: a new one needs no edit here."""

pytestmark = pytest.mark.interop

LATER = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()


def _ran_by(url: str) -> dict[int, str]:
    return {r["job_id"]: r["runtime"] for r in effects(url, "done")}


def _exchange_jobs(node: NodeEnv, url: str) -> None:
    """Node adds (WorkerUtils and SQL) and Python runs; Python adds and Node runs. Each job exactly once."""
    from_node = [
        j["id"]
        for j in node.add_jobs(url, [{"task": "record", "payload": {"from": "node-utils", "i": i}} for i in range(2)])
    ]
    from_node += [j["id"] for j in node.add_jobs(url, [{"task": "record", "payload": {"from": "node-sql"}}], via="sql")]
    from_node += [
        j["id"]
        for j in node.add_jobs(url, [{"task": "record", "queueName": "q-node", "priority": -1, "maxAttempts": 3}])
    ]
    assert len(set(from_node)) == 4
    ran = jobworker(url, "--json", "worker", "--tasks", TASKS, "--once")
    assert ran.json() == {"processed": 4}
    assert _ran_by(url) == {i: "python" for i in from_node}

    from_python = [
        jobworker(url, "--json", "add", "record", "--payload", f'{{"from": "python", "i": {i}}}').json()["id"]
        for i in range(2)
    ]
    from_python.append(jobworker(url, "--json", "add", "record", "--queue", "q-python", "--priority", "2").json()["id"])
    result = node.run_once(url)
    assert result.code == 0, result.describe()
    assert _ran_by(url) == {**{i: "python" for i in from_node}, **{i: "node" for i in from_python}}
    assert done_counts(url) == {i: 1 for i in from_node + from_python}
    assert jobs(url) == []


def test_python_migrates_first_then_both_runtimes_run_each_others_jobs(node: NodeEnv, empty_db_url: str) -> None:
    url = empty_db_url
    assert jobworker(url, "--json", "migrate").json()["applied"] == [
        "graphile 19",
        "graphile 20",
        *OWN,
    ]
    schema_only = node.graphile_worker(url, "--schema-only")
    assert schema_only.code == 0, schema_only.describe()
    _exchange_jobs(node, url)


def test_node_migrates_first_then_python_migrates_and_both_run(node: NodeEnv, empty_db_url: str) -> None:
    url = empty_db_url
    schema_only = node.graphile_worker(url, "--schema-only")
    assert schema_only.code == 0, schema_only.describe()
    migrated = jobworker(url, "--json", "migrate").json()
    assert migrated["installed"] is False and migrated["applied"] == ["graphile 20", *OWN]
    # the shared table keeps exactly graphile-worker's ids (0.18's 20 included); jobworker's own are in
    # jobworker_migrations
    assert [r["id"] for r in sql(url, "select id from graphile_worker.migrations order by id")] == list(range(1, 21))
    assert [r["id"] for r in sql(url, "select id from graphile_worker.jobworker_migrations")] == OWN_IDS
    _exchange_jobs(node, url)


def test_newer_breaking_migration_is_refused_by_both_and_non_breaking_tolerated(node: NodeEnv, db_url: str) -> None:
    url = db_url
    job_id = jobworker(url, "--json", "add", "record").json()["id"]
    sql(url, "insert into graphile_worker.migrations (id, breaking) values (21, true)")

    # graphile-worker sets exit code 57 (its CLI's catch-all then turns that into 1, so check both).
    refused = node.run_once(url)
    assert refused.code == 57, refused.describe()
    assert "includes breaking migration 21" in refused.stderr
    cli = node.graphile_worker(url, "--schema-only")
    assert cli.code != 0 and "includes breaking migration 21" in cli.stderr, cli.describe()
    for args in (["migrate"], ["worker", "--tasks", TASKS, "--once"]):
        result = jobworker(url, *args)
        assert result.code == 4, result.describe()
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and "migration 21, which is breaking and newer" in line
    assert done_counts(url) == {} and [r["id"] for r in jobs(url)] == [job_id]

    sql(url, "update graphile_worker.migrations set breaking = false where id = 21")
    tolerated = node.graphile_worker(url, "--schema-only")
    assert tolerated.code == 0, tolerated.describe()
    assert "revision 21" in tolerated.stdout + tolerated.stderr  # Node warns and continues
    assert jobworker(url, "migrate").code == 0
    node_job = node.add_jobs(url, [{"task": "record", "payload": {"from": "node"}}])[0]["id"]
    assert jobworker(url, "--json", "worker", "--tasks", TASKS, "--once").json() == {"processed": 2}
    python_job = jobworker(url, "--json", "add", "record").json()["id"]
    assert node.run_once(url).ok()
    assert _ran_by(url) == {job_id: "python", node_job: "python", python_job: "node"}


def test_job_key_replace_across_runtimes_keeps_one_job(node: NodeEnv, db_url: str) -> None:
    url = db_url
    first = jobworker(url, "--json", "add", "record", "--job-key", "k", "--payload", '{"v": 1}', "--run-at", LATER)
    job_id = first.json()["id"]
    [via_utils] = node.add_jobs(url, [{"task": "record", "payload": {"v": 2}, "jobKey": "k", "runAt": LATER}])
    [via_sql] = node.add_jobs(url, [{"task": "record", "payload": {"v": 3}, "jobKey": "k", "runAt": LATER}], via="sql")
    assert (via_utils["id"], via_utils["revision"]) == (job_id, 1)
    assert (via_sql["id"], via_sql["revision"]) == (job_id, 2)
    again = jobworker(url, "--json", "add", "record", "--job-key", "k", "--payload", '{"v": 4}').json()
    assert (again["id"], again["revision"]) == (job_id, 3)
    [row] = jobs(url)
    assert (row["id"], row["key"], row["payload"], row["revision"]) == (job_id, "k", {"v": 4}, 3)

    # Node's preserve_run_at (throttle) keeps the run_at Python set; unsafe_dedupe adds nothing.
    [kept] = node.add_jobs(
        url, [{"task": "record", "payload": {"v": 5}, "jobKey": "k", "jobKeyMode": "preserve_run_at", "runAt": LATER}]
    )
    [row] = jobs(url)
    assert kept["id"] == job_id and row["payload"] == {"v": 5} and row["run_at"] <= datetime.now(UTC)
    node.add_jobs(url, [{"task": "record", "jobKey": "k", "jobKeyMode": "unsafe_dedupe"}], via="sql")
    assert len(jobs(url)) == 1

    assert node.run_once(url).ok()
    assert done_counts(url) == {job_id: 1} and jobs(url) == []


def test_named_queue_is_serial_across_both_runtimes(
    node: NodeEnv, db_url: str, spawn: Spawn, spawn_worker: Callable[..., Process]
) -> None:
    """Python runs ``record``, Node only ``node_record``; one queue holds both, so they must take turns."""
    url = db_url
    per_runtime = 4
    python_jobs = [
        jobworker(url, "--json", "add", "record", "--queue", "serial", "--payload", '{"sleep": 0.3}').json()["id"]
        for _ in range(per_runtime)
    ]
    node_jobs = [
        j["id"]
        for j in node.add_jobs(
            url, [{"task": "node_record", "queueName": "serial", "payload": {"sleep": 0.3}}] * per_runtime
        )
    ]
    python = spawn_worker(url, "--concurrency", "4", "--poll-interval", "100ms")
    node_worker = node.worker(spawn, url, tasks="node_record", concurrency=4)

    every = set(python_jobs + node_jobs)
    eventually(
        lambda: done_counts(url),
        lambda counts: set(counts) == every,
        timeout=60,
        what="every queued job done",
        context=lambda: python.output() + node_worker.output(),
    )
    assert done_counts(url) == {i: 1 for i in every}
    assert _ran_by(url) == {**{i: "python" for i in python_jobs}, **{i: "node" for i in node_jobs}}

    spans: dict[int, dict[str, datetime]] = {}
    for row in effects(url):
        spans.setdefault(row["job_id"], {})[row["note"]] = row["at"]
    ordered = sorted(spans.values(), key=lambda s: s["started"])
    for before, after in itertools.pairwise(ordered):
        assert after["started"] >= before["done"], "two jobs of one named queue overlapped"
