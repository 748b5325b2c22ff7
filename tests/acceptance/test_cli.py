"""Every ``jobworker`` command, run as a real subprocess against real PostgreSQL."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from jobworker import sql as sql_files
from jobworker.devdb import free_port
from tests.acceptance.helpers import (
    TASKS,
    Process,
    done_counts,
    eventually,
    jobs,
    jobworker,
    jobworker_many,
    queue_snapshot,
    started_ids,
)

OWN_IDS = [n for n, _ in sql_files.migration_files()["jobworker"]]
OWN = [f"jobworker {n}" for n in OWN_IDS]
"""jobworker's own migrations (ids, and as ``migrate`` reports them), from the files: a new one needs no edit here."""

FUTURE = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)


def test_migrate_installs_once_then_does_nothing(empty_db_url: str) -> None:
    first = jobworker(empty_db_url, "--json", "migrate").json()
    assert first["installed"] is True
    assert first["applied"] == ["graphile 19", "graphile 20", *OWN]
    again = jobworker(empty_db_url, "migrate").ok()
    assert "already up to date" in again.stdout


def test_add_list_show_reschedule_complete_fail_remove_cleanup(db_url: str) -> None:
    url = db_url
    added = jobworker(
        url,
        "add",
        "record",
        "--payload",
        '{"n": 1}',
        "--queue",
        "q1",
        "--run-at",
        FUTURE.isoformat(),
        "--priority",
        "3",
        "--max-attempts",
        "4",
        "--job-key",
        "k1",
        "--job-key-mode",
        "replace",
        "--flag",
        "f1",
        "--flag",
        "f2",
        "--json",
    ).json()
    assert added["key"] == "k1" and added["revision"] == 0 and added["max_attempts"] == 4 and added["priority"] == 3
    [row] = jobs(url)
    assert row["id"] == added["id"]
    assert (row["task_identifier"], row["queue_name"], row["payload"]) == ("record", "q1", {"n": 1})
    assert row["run_at"] == FUTURE and row["flags"] == {"f1": True, "f2": True}

    # The same key again updates that job in place (text output says so); preserve_run_at keeps run_at.
    text = jobworker(
        url,
        "add",
        "record",
        "--payload",
        '{"n": 2}',
        "--job-key",
        "k1",
        "--run-at",
        FUTURE.isoformat(),
        "--queue",
        "q1",
    )
    assert text.ok().stdout.startswith(f"updated job {added['id']} (record)")
    kept = jobworker(
        url, "--json", "add", "record", "--job-key", "k1", "--job-key-mode", "preserve_run_at", "--queue", "q1"
    ).json()
    assert kept["id"] == added["id"] and kept["revision"] == 2
    [row] = jobs(url)
    assert row["payload"] == {} and row["run_at"] == FUTURE
    dedupe = jobworker(url, "--json", "add", "record", "--job-key", "k1", "--job-key-mode", "unsafe_dedupe").json()
    assert dedupe["id"] == added["id"] and len(jobs(url)) == 1

    ready = jobworker(url, "--json", "add", "slow", "--payload", '{"x": true}').json()
    keyed_id, ready_id = added["id"], ready["id"]

    # list: every filter, JSON and text.
    listing = jobworker_many(
        url,
        [
            ["--json", "list"],
            ["list", "--state", "scheduled", "--json"],
            ["list", "--state", "ready", "--json"],
            ["list", "--state", "failed", "--json"],
            ["list", "--task", "slow", "--json"],
            ["list", "--queue", "q1", "--json"],
            ["list", "--limit", "1", "--json"],
            ["list"],
            ["--json", "show", str(ready_id)],
            ["show", str(keyed_id)],
            ["show", "999999"],
            ["stats", "--json"],
            ["stats"],
        ],
    )
    every, scheduled, ready_list, failed, by_task, by_queue, limited, table, shown, shown_text, missing = listing[:11]
    stats, stats_text = listing[11:]
    assert sorted(j["id"] for j in every.json()) == [keyed_id, ready_id]
    assert [j["id"] for j in scheduled.json()] == [keyed_id]
    assert [(j["id"], j["state"]) for j in ready_list.json()] == [(ready_id, "ready")]
    assert failed.json() == []
    assert [j["id"] for j in by_task.json()] == [ready_id]
    assert [j["id"] for j in by_queue.json()] == [keyed_id]
    assert len(limited.json()) == 1
    assert "STATE" in table.ok().stdout and "scheduled" in table.stdout and "q1" in table.stdout
    assert shown.json()["payload"] == {"x": True} and shown.json()["task_identifier"] == "slow"
    assert "task_identifier: record" in shown_text.ok().stdout
    assert missing.code == 1 and missing.stderr.strip() == "error: no job with id 999999"
    assert (stats.json()["ready"], stats.json()["scheduled"], stats.json()["failed"]) == (1, 1, 0)
    assert "ready 1  scheduled 1" in stats_text.ok().stdout

    # reschedule: --now with every option, then --run-at.
    moved = jobworker(
        url, "--json", "reschedule", str(keyed_id), "--now", "--priority", "1", "--attempts", "2", "--max-attempts", "9"
    ).json()
    assert moved == {"rescheduled": [keyed_id], "skipped": []}
    row = next(r for r in jobs(url) if r["id"] == keyed_id)
    assert (row["priority"], row["attempts"], row["max_attempts"]) == (1, 2, 9)
    assert row["run_at"] <= datetime.now(UTC)
    later = jobworker(url, "reschedule", str(ready_id), "--run-at", FUTURE.isoformat()).ok()
    assert later.stdout.strip() == "rescheduled 1 job(s)"
    assert next(r for r in jobs(url) if r["id"] == ready_id)["run_at"] == FUTURE

    # fail, then cleanup deletes the permanently failed job; complete and remove the rest.
    third = jobworker(url, "--json", "add", "record", "--job-key", "k3").json()["id"]
    failed_out = jobworker(url, "--json", "fail", str(keyed_id), "--reason", "operator gave up").json()
    assert failed_out == {"failed": [keyed_id], "skipped": []}
    row = next(r for r in jobs(url) if r["id"] == keyed_id)
    assert row["last_error"] == "operator gave up" and row["attempts"] == row["max_attempts"]
    assert [j["id"] for j in jobworker(url, "--json", "list", "--state", "failed").json()] == [keyed_id]

    cleaned = jobworker(url, "--json", "cleanup", "--operation", "delete-permanently-failed-jobs").json()
    assert cleaned == {"delete-permanently-failed-jobs": 1}
    assert keyed_id not in {r["id"] for r in jobs(url)}
    old_spelling = jobworker(url, "--json", "cleanup", "--operation", "gc-job-queues", "--task", "gc-task-identifiers")
    assert "warning: --task is deprecated" in old_spelling.stderr
    two = old_spelling.json()
    assert set(two) == {"gc-job-queues", "gc-task-identifiers"}
    every_task = jobworker(url, "--json", "cleanup").json()
    assert set(every_task) == {"gc-task-identifiers", "gc-job-queues", "delete-permanently-failed-jobs"}

    completed = jobworker(url, "--json", "complete", str(ready_id), "424242")
    assert completed.code == 1  # one id matched nothing
    assert json.loads(completed.stdout) == {"completed": [ready_id], "skipped": [424242]}
    removed = jobworker(url, "--json", "remove", "k3").json()
    assert removed == {"removed": third}
    gone = jobworker(url, "remove", "k3")
    assert gone.code == 1 and gone.stderr.strip() == "error: no job with key 'k3'"
    assert jobs(url) == []


def test_worker_once_runs_every_ready_job_once(db_url: str) -> None:
    ids = [jobworker(db_url, "--json", "add", "record", "--payload", f'{{"i": {i}}}').json()["id"] for i in range(3)]
    ids += [jobworker(db_url, "--json", "add", "record", "--queue", "serial").json()["id"] for _ in range(3)]
    # a job with a forbidden flag and a future job are not run
    flagged = jobworker(db_url, "--json", "add", "record", "--flag", "gpu").json()["id"]
    future = jobworker(db_url, "--json", "add", "record", "--run-at", FUTURE.isoformat()).json()["id"]
    result = jobworker(
        db_url, "--json", "worker", "--tasks", TASKS, "--once", "--concurrency", "3", "--forbidden-flag", "gpu"
    )
    assert result.json() == {"processed": len(ids)}
    assert done_counts(db_url) == {i: 1 for i in ids}
    assert {r["id"] for r in jobs(db_url)} == {flagged, future}
    assert jobworker(db_url, "worker", "--tasks", TASKS, "--once").ok().stdout.strip() == "processed 1 jobs"
    assert done_counts(db_url)[flagged] == 1


def test_live_worker_commands(db_url: str, spawn_worker: Callable[..., Process]) -> None:
    """workers, stats and complete against a live worker; force-unlock the locks of a killed one."""
    job_id = jobworker(db_url, "--json", "add", "slow").json()["id"]
    worker = spawn_worker(
        db_url, "--concurrency", "2", env={"ACCEPTANCE_SLEEP": "60", "JOBWORKER_HEARTBEAT_INTERVAL": "1"}
    )
    eventually(
        lambda: started_ids(db_url), lambda s: job_id in s, timeout=20, what="slow job start", context=worker.output
    )

    live, stats, complete = jobworker_many(
        db_url, [["--json", "workers"], ["--json", "stats"], ["complete", str(job_id)]]
    )
    [info] = live.json()
    assert info["locked_jobs"] == 1 and info["metadata"]["pid"] == worker.pid
    assert "slow" in info["metadata"]["tasks"]
    assert (stats.json()["locked"], stats.json()["workers_active"]) == (1, 1)
    assert complete.code == 1 and "skipped [" in complete.stdout  # a running job is not completed under it

    worker.signal(signal.SIGKILL)
    worker.wait(10)
    [row] = jobs(db_url)
    assert row["locked_by"] == info["id"]
    unlocked = jobworker(db_url, "--json", "force-unlock", info["id"]).json()
    assert unlocked == {"unlocked": [info["id"]]}
    [row] = jobs(db_url)
    assert row["locked_by"] is None and row["locked_at"] is None
    assert jobworker(db_url, "--json", "worker", "--tasks", TASKS, "--once").json() == {"processed": 1}
    assert done_counts(db_url) == {job_id: 1}


def test_errors_are_one_line_with_meaningful_codes_and_leave_the_queue_alone(db_url: str, empty_db_url: str) -> None:
    jobworker(db_url, "add", "record", "--job-key", "existing", "--payload", '{"keep": 1}').ok()
    before = queue_snapshot(db_url)
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    cases: list[tuple[list[str], int, str]] = [
        (["--database-url", "mysql://root@127.0.0.1/x", "list"], 2, "database URL must start with postgresql://"),
        (["--database-url", closed, "add", "record"], 1, "cannot reach the database"),
        (["--database-url", closed, "worker", "--tasks", TASKS, "--once"], 1, "cannot reach the database"),
        (["add", "record", "--payload", "{not json"], 2, "--payload: not valid JSON"),
        (["list", "--state", "bogus"], 2, "invalid choice: 'bogus'"),
        (["add", "record", "--max-attempts", "0"], 2, "max_attempts: 0 must be an integer from 1"),
        (["add", "record", "--job-key", "k" * 513], 2, "job_key: 513 characters is over the limit of 512"),
        (["add", "record", "--job-key", "existing", "--run-at", "tomorrow"], 2, "--run-at: 'tomorrow' is not an ISO"),
        (["reschedule", "1", "--max-attempts", "0"], 2, "max_attempts: 0"),
        (["show", "abc"], 2, "job ids must be integers"),
        (["worker", "--tasks", "no.such.module", "--once"], 2, "cannot import"),
        (["worker", "--tasks", TASKS, "--concurrency", "0", "--once"], 2, "concurrency: 0"),
        (["sweep-stale-workers", "--sweep-threshold", "soon"], 2, "is not a duration"),
        (["add"], 2, "the following arguments are required: task"),
    ]
    results = jobworker_many(db_url, [args for args, _, _ in cases])
    unmigrated = jobworker_many(empty_db_url, [["list"], ["worker", "--tasks", TASKS, "--once"]])
    for (_, code, message), result in zip(cases, results, strict=True):
        lines = result.stderr.strip().splitlines()
        assert result.code == code, result.describe()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.describe()
        assert "Traceback" not in result.stderr and result.stdout == "", result.describe()
    for result in unmigrated:
        assert result.code == 1, result.describe()
        assert len(result.stderr.strip().splitlines()) == 1 and "jobworker migrate" in result.stderr, result.describe()
    assert queue_snapshot(db_url) == before
    assert queue_snapshot(db_url)[0][0]["payload"] == {"keep": 1}
