"""Poison payloads: JSON PostgreSQL accepts but Python cannot decode fails its own job, never the worker.

Before, the claim decoded every payload after it committed: a RecursionError escaped the main loop, the
worker died, restarted, claimed the same jobs and died again, burning an attempt of every job claimed
alongside (up to 199 in batch mode) on every cycle.
"""

from __future__ import annotations

import pytest

from tests.acceptance.helpers import TASKS, done_counts, jobs, jobworker, sql

ADD = "select (graphile_worker.add_job('record', %s::json, max_attempts => 5)).id"
DEEP = '{"nested": ' + "[" * 2000 + "]" * 2000 + "}"


@pytest.mark.parametrize("mode", [[], ["--batch"]], ids=["default", "batch"])
def test_a_payload_nested_2000_deep_fails_only_its_job_permanently(db_url: str, mode: list[str]) -> None:
    good = [sql(db_url, ADD, [f'{{"i": {i}}}'])[0]["id"] for i in range(2)]
    bad = sql(db_url, ADD, [DEEP])[0]["id"]
    good += [sql(db_url, ADD, [f'{{"i": {i}}}'])[0]["id"] for i in range(2, 4)]

    ran = jobworker(db_url, "--json", "worker", "--tasks", TASKS, "--once", "--concurrency", "4", *mode)

    assert ran.code == 0, ran.describe()
    assert "Traceback" not in ran.stderr
    assert done_counts(db_url) == {i: 1 for i in good}
    # (Read back without the payload: this test process cannot decode it either.)
    [row] = sql(db_url, "select id, attempts, max_attempts, locked_by, last_error from graphile_worker._private_jobs")
    assert row["id"] == bad
    assert (row["attempts"], row["max_attempts"], row["locked_by"]) == (5, 5, None)
    assert row["last_error"] == "Invalid job payload: JSON nested too deeply for Python to decode (RecursionError)"


def test_a_payload_over_the_size_cap_is_refused_at_enqueue_with_a_clear_error(db_url: str) -> None:
    big = '{"blob": "' + "x" * 200 + '"}'
    refused = jobworker(db_url, "add", "record", "--payload", big, env={"JOBWORKER_MAX_PAYLOAD_BYTES": "100"})
    assert refused.code == 2, refused.describe()
    assert "payload: 212 bytes of JSON is over the 100-byte payload cap" in refused.stderr
    assert jobs(db_url) == []
    jobworker(db_url, "add", "record", "--payload", big).ok()  # the default cap (1 MiB) takes it
