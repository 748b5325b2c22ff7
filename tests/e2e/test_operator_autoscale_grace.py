"""The autoscaler's floor on the real control plane (kwok nodes; pods never run, the locks are written as a
worker's claim writes them): pods with a job locked within the scale-down grace are kept, and pods whose
every job has run past it are scaled away (issue 10, item 10).

Run: .venv/bin/python -m pytest -q tests/e2e/test_operator_autoscale_grace.py
"""

from __future__ import annotations

from typing import Any

import psycopg
from operator_fixtures import OperatorProcess, wait_for
from test_operator import TIMEOUT, create_db_secret, get, ready_pool

GRACE = 3  # scaleDownDelay in seconds: also the scale-down grace of running jobs


def lock(url: str, worker: str, seconds_ago: float) -> None:
    """One job locked by ``worker``; a negative age keeps it within the grace however slow the test runs."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select (graphile_worker.add_job('long', '{}'::json)).id").fetchone()
        assert row is not None
        conn.execute(
            "update graphile_worker._private_jobs set locked_by = %s, attempts = 1, "
            "locked_at = now() - %s * interval '1 second' where id = %s",
            [worker, seconds_ago, row[0]],
        )


def test_scales_below_pods_with_running_jobs_only_past_the_grace(
    kubectl: Any, operator: OperatorProcess, namespace: str, pool_database: str
) -> None:
    create_db_secret(kubectl, namespace, pool_database)
    ready_pool(
        kubectl,
        namespace,
        "grace",
        scheduler={"enabled": False},
        workers={
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 4,
                "targetJobsPerReplica": 10,
                "scaleDownDelay": f"{GRACE}s",
            }
        },
    )

    def replicas() -> int:
        return int((get(kubectl, namespace, "deployment", "grace-worker") or {}).get("spec", {}).get("replicas", -1))

    with psycopg.connect(pool_database, autocommit=True) as conn:
        conn.execute("select graphile_worker.add_job('burst', '{}'::json) from generate_series(1, 31)")
    wait_for("4 replicas for 31 ready jobs", lambda: replicas() == 4, timeout=TIMEOUT)

    # The burst is done; three pods each run one job that started just now. ceil(3 / 10) = 1, but a
    # scale-down would interrupt them: 3 stay.
    with psycopg.connect(pool_database, autocommit=True) as conn:
        conn.execute("delete from graphile_worker._private_jobs")
    for worker in ("pod-a", "pod-b", "pod-c"):
        lock(pool_database, worker, -3600)
    wait_for("3 replicas: one per pod with a young job", lambda: replicas() == 3, timeout=TIMEOUT)

    # Two of those jobs have now run for an hour (stuck, or far longer than the grace): their pods no longer
    # hold the pool up. Before lock ages, one pod per locked job stayed (3).
    with psycopg.connect(pool_database, autocommit=True) as conn:
        conn.execute(
            "update graphile_worker._private_jobs set locked_at = now() - interval '1 hour' "
            "where locked_by in ('pod-b', 'pod-c')"
        )
    wait_for("1 replica: the pods past the grace are scaled away", lambda: replicas() == 1, timeout=TIMEOUT)
    pool = get(kubectl, namespace, "jwp", "grace") or {}
    assert pool["status"]["queue"]["locked"] == 3  # the jobs are still demand: ceil(3 / 10) = 1 pod
