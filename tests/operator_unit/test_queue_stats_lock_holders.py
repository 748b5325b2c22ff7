"""Lock holders cross the workers' /metrics?queue_stats=1 reading (queueStats.source workers) by rank, never by
worker id, and a reading from an older worker image (no such series) leaves them unknown."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from jobworker.httpserver import render_queue_reading
from jobworker.models import LockHolder, QueueStats
from jobworker_operator import queue_stats


def test_lock_holders_survive_the_workers_reading() -> None:
    holders = [LockHolder(3, 1.5, 5000.0), LockHolder(1, 10.0, 10.0), LockHolder(2, 3600.0, 7200.0)]
    stats = QueueStats(locked=6, lock_holders=holders, lock_holders_total=5)
    text = render_queue_reading(stats, 19).decode()
    labels = {
        tuple(sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("jobworker_queue_reading_lock_holder_")
    }
    assert labels == {("rank",)}  # one series per rank: bounded, whichever workers come and go
    reading = queue_stats.parse_worker_reading(text)
    assert reading.stats.lock_holders == holders
    assert reading.stats.lock_holders_total == 5


def test_no_holders_is_an_empty_list_not_unknown() -> None:
    reading = queue_stats.parse_worker_reading(render_queue_reading(QueueStats(lock_holders=[]), 19).decode())
    assert (reading.stats.lock_holders, reading.stats.lock_holders_total) == ([], 0)


def test_a_reading_without_lock_ages_leaves_them_unknown() -> None:
    reading = queue_stats.parse_worker_reading(render_queue_reading(QueueStats(locked=2), 19).decode())
    assert reading.stats.lock_holders is None
