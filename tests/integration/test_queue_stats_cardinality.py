"""One queue per entity (100k named queues) keeps the operator's queue reading and /metrics bounded
(issue 11, item 4): the 20 fullest queues keep their name, the rest count as "other"."""

from __future__ import annotations

from pathlib import Path

import prometheus_client

from jobworker_operator import metrics, queue_stats
from tests.integration.runtime import fetch

QUEUES = 100_000


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_100k_queues_give_a_bounded_reading_and_bounded_metrics(db_url: str) -> None:
    await fetch(
        db_url,
        "select graphile_worker.add_jobs(array("
        "  select ('per_entity', '{}'::json, 'entity-' || i, null, null, null, null, null)::graphile_worker.job_spec"
        "  from generate_series(1, %s) i))",
        [QUEUES],
    )
    await fetch(
        db_url,
        "select graphile_worker.add_job('busy', '{}'::json, queue_name => 'busy') from generate_series(1, 50)",
    )
    before = rss_bytes()
    reading = await queue_stats.worker_utils_reader(db_url, "graphile_worker")
    metrics.observe_queue("ns", "cardinality", reading)
    try:
        exported = [
            line for line in prometheus_client.generate_latest().decode().splitlines() if 'pool="cardinality"' in line
        ]
        grown = rss_bytes() - before

        assert sum(r.count for r in reading.by_task) == QUEUES + 50
        assert len(reading.by_task) <= metrics.TOP_QUEUES + 1 + 1  # top queues, "other", busy's own task
        queues = {r.queue for r in reading.by_task}
        assert "busy" in queues and "other" in queues
        other = sum(r.count for r in reading.by_task if r.queue == "other")
        assert other == QUEUES - (metrics.TOP_QUEUES - 1)
        assert len(exported) <= metrics.TOP_QUEUES + 8
        assert sum(len(line) for line in exported) < 16 * 1024
        assert grown < 32 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB reading 100k queues"
    finally:
        metrics.forget("ns", "cardinality")
