"""The operator's series per pool are bounded whatever the reader returns (issue 11, item 4)."""

from __future__ import annotations

from dataclasses import dataclass, field

import prometheus_client

from jobworker_operator import metrics


@dataclass
class Row:
    task: str
    queue: str | None
    state: str
    count: int


@dataclass
class Stats:
    by_task: list[Row] = field(default_factory=list)
    oldest_ready_seconds: float | None = None
    workers_active: int = 0
    workers_stale: int = 0


def series(pool: str) -> list[str]:
    text = prometheus_client.generate_latest().decode()
    return [line for line in text.splitlines() if line.startswith("jobworker_queue_jobs{") and f'pool="{pool}"' in line]


def test_100k_queues_and_tasks_fold_into_other() -> None:
    rows = [Row(f"task-{i % 1000}", f"entity-{i}", "ready", 1) for i in range(100_000)]
    rows += [Row("busy", "busy", "ready", 500), Row("busy", None, "locked", 3)]
    metrics.observe_queue("ns", "capped", Stats(rows))
    try:
        lines = series("capped")
        assert len(lines) <= (metrics.TOP_TASKS + 1) * (metrics.TOP_QUEUES + 2)
        assert any('task="busy"' in line and 'queue="busy"' in line for line in lines)
        assert any('queue="other"' in line for line in lines)
        total = sum(float(line.rsplit(" ", 1)[1]) for line in lines)
        assert total == 100_000 + 503
    finally:
        metrics.forget("ns", "capped")
    assert series("capped") == []
