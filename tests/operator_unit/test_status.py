from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobworker_operator import status
from jobworker_operator.plan import MigrationStep
from tests.operator_unit.helpers import pool

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
OK = MigrationStep("Succeeded", rollout=True, reason="Migrated", message="schema migrated")


def seen(step: MigrationStep = OK, available: bool = True, problems: tuple[str, ...] = ()) -> status.Observed:
    return status.Observed(
        step=step,
        desired_replicas=2,
        replicas=2,
        ready_replicas=2 if available else 1,
        selector="a=b",
        children_available=available,
        problems=problems,
    )


def by_type(conds: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in conds}


class TestConditions:
    def test_ready(self) -> None:
        c = by_type(status.conditions(pool(), seen()))
        assert c["Ready"]["status"] == "True"
        assert c["Migrated"]["status"] == "True"
        assert c["Progressing"]["status"] == "False"
        assert c["Degraded"]["status"] == "False"
        assert all(x["observedGeneration"] == 3 for x in c.values())

    def test_rolling_out(self) -> None:
        c = by_type(status.conditions(pool(), seen(available=False)))
        assert (c["Ready"]["status"], c["Progressing"]["status"]) == ("False", "True")
        assert c["Ready"]["reason"] == "RollingOut"

    def test_migration_running(self) -> None:
        running = MigrationStep("Running", reason="MigrationRunning", message="job is running")
        c = by_type(status.conditions(pool(), seen(step=running)))
        assert (c["Migrated"]["status"], c["Migrated"]["reason"]) == ("False", "MigrationRunning")
        assert c["Progressing"]["status"] == "True"
        assert c["Degraded"]["status"] == "False"

    def test_failed_migration_is_degraded_with_job_reason(self) -> None:
        failed = MigrationStep("Failed", reason="BackoffLimitExceeded", message="pool-migrate-x failed: limit")
        c = by_type(status.conditions(pool(), seen(step=failed)))
        assert c["Degraded"] == {**c["Degraded"], "status": "True", "reason": "BackoffLimitExceeded"}
        assert "failed" in str(c["Degraded"]["message"])
        assert c["Ready"]["status"] == "False"
        assert c["Progressing"]["status"] == "False"

    def test_unreachable_db_is_degraded_but_still_ready(self) -> None:
        c = by_type(status.conditions(pool(), seen(problems=("database unreachable: timeout",))))
        assert c["Degraded"]["status"] == "True"
        assert "database unreachable" in str(c["Degraded"]["message"])
        assert c["Ready"]["status"] == "True"

    def test_noop_is_ready_and_says_so(self) -> None:
        c = by_type(status.conditions(pool(provider={"type": "noop"}), seen(available=False)))
        assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("True", "NoopProvider")
        assert "noop" in str(c["Ready"]["message"])


class TestMergeConditions:
    def test_keeps_transition_time_when_unchanged(self) -> None:
        first = status.merge_conditions(None, [status.condition("Ready", True, "A", "m", 1)], NOW)
        later = NOW + timedelta(minutes=5)
        again = status.merge_conditions(first, [status.condition("Ready", True, "B", "m2", 2)], later)
        assert again[0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"
        flipped = status.merge_conditions(again, [status.condition("Ready", False, "C", "m3", 2)], later)
        assert flipped[0]["lastTransitionTime"] == "2025-01-01T12:05:00Z"


class TestBuild:
    def test_summary_fields(self) -> None:
        doc = status.build(pool(), seen(available=False), {}, NOW)
        assert doc["observedGeneration"] == 3
        assert doc["workers"] == "1/2"
        assert (doc["replicas"], doc["readyReplicas"], doc["selector"]) == (2, 1, "a=b")
        assert [c["type"] for c in doc["conditions"]] == ["Ready", "Migrated", "Progressing", "Degraded"]


@dataclass
class Stats:
    ready: int = 5
    scheduled: int = 1
    locked: int = 2
    failed: int = 0
    oldest_ready_seconds: float | None = 12.7
    workers_active: int = 3
    workers_stale: int = 0


class TestQueue:
    def test_from_stats(self) -> None:
        q = status.queue(Stats(), NOW)
        assert q == {
            "ready": 5,
            "scheduled": 1,
            "locked": 2,
            "failed": 0,
            "oldestReadySeconds": 12,
            "workersActive": 3,
            "workersStale": 0,
            "observedAt": "2025-01-01T12:00:00Z",
        }

    def test_empty_queue(self) -> None:
        assert status.queue(Stats(oldest_ready_seconds=None), NOW)["oldestReadySeconds"] is None
