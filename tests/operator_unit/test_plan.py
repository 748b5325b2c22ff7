from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobworker_operator import plan
from jobworker_operator.model import Autoscaling
from jobworker_operator.plan import JobState
from tests.operator_unit.helpers import pool

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
QSTASH = {"type": "qstash", "qstash": {"secretRef": {"name": "qs"}, "callbackUrl": "https://x/cb"}}


def job(cond_type: str | None, reason: str = "", message: str = "") -> dict[str, Any]:
    conds = [{"type": cond_type, "status": "True", "reason": reason, "message": message}] if cond_type else []
    return {"status": {"conditions": conds}}


class TestComponents:
    def test_graphile_defaults(self) -> None:
        assert plan.components(pool()) == {"worker", "scheduler", "sweep", "cleanup", "metrics"}

    def test_graphile_minimal(self) -> None:
        p = pool(
            scheduler={"enabled": False},
            sweep={"enabled": False},
            cleanup={"enabled": False},
            metrics={"enabled": False},
        )
        assert plan.components(p) == {"worker"}

    def test_qstash(self) -> None:
        assert plan.components(pool(provider=QSTASH)) == {"receiver", "scheduler"}

    def test_noop_has_no_children(self) -> None:
        assert plan.components(pool(provider={"type": "noop"})) == frozenset()


class TestJobState:
    def test_absent(self) -> None:
        assert plan.job_state(None) is None

    def test_running(self) -> None:
        assert plan.job_state(job(None)) == JobState("running")

    def test_complete(self) -> None:
        assert plan.job_state(job("Complete")).phase == "succeeded"  # type: ignore[union-attr]

    def test_backoff_limit(self) -> None:
        state = plan.job_state(job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
        assert state == JobState("failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    def test_pod_failure_policy_exit_code(self) -> None:
        msg = "Container migrate for pod ns/p-x failed with exit code 3 matching FailJob rule at index 0"
        state = plan.job_state(job("Failed", "PodFailurePolicy", msg))
        assert state is not None and state.exit_code == 3

    def test_ignores_false_conditions(self) -> None:
        raw = {"status": {"conditions": [{"type": "Failed", "status": "False"}]}}
        assert plan.job_state(raw) == JobState("running")


def step(p: Any = None, **kw: Any) -> plan.MigrationStep:
    args: dict[str, Any] = {
        "migrated_digest": None,
        "normal": None,
        "breaking": None,
        "locked_jobs": None,
        "drain_started_at": None,
        "now": NOW,
    }
    args.update(kw)
    return plan.migration_step(p or pool(), **args)


BREAKING = JobState("failed", "PodFailurePolicy", "exit code 3", 3)


class TestMigrationStep:
    def test_new_pool_creates_job_and_holds_rollout(self) -> None:
        s = step()
        assert (s.phase, s.create_job, s.rollout, s.drain) == ("Pending", "normal", False, False)

    def test_running_waits(self) -> None:
        s = step(normal=JobState("running"))
        assert (s.phase, s.create_job, s.rollout) == ("Running", None, False)

    def test_success_rolls_out(self) -> None:
        s = step(normal=JobState("succeeded"))
        assert (s.phase, s.rollout) == ("Succeeded", True)

    def test_recorded_digest_rolls_out_even_without_the_job(self) -> None:
        p = pool()
        assert step(p, migrated_digest=p.migration_digest).rollout

    def test_stale_digest_does_not_count(self) -> None:
        assert step(migrated_digest="0000000000").create_job == "normal"

    def test_failure_is_degraded_and_keeps_old_workers(self) -> None:
        s = step(normal=JobState("failed", "BackoffLimitExceeded", "backoff limit"))
        assert (s.phase, s.reason, s.rollout, s.drain) == ("Failed", "BackoffLimitExceeded", False, False)
        assert "backoff limit" in s.message

    def test_schema_too_new(self) -> None:
        s = step(normal=JobState("failed", "PodFailurePolicy", "exit code 4", 4))
        assert (s.phase, s.reason, s.rollout) == ("Failed", "SchemaTooNew", False)

    @pytest.mark.parametrize("provider", [QSTASH, {"type": "noop"}])
    def test_non_graphile_needs_none(self, provider: dict[str, Any]) -> None:
        s = step(pool(provider=provider))
        assert (s.phase, s.rollout, s.create_job) == ("NotRequired", True, None)

    def test_disabled(self) -> None:
        assert step(pool(migration={"enabled": False})).phase == "NotRequired"


class TestBreakingMigration:
    def test_exit_3_starts_draining(self) -> None:
        s = step(normal=BREAKING, locked_jobs=4)
        assert (s.phase, s.drain, s.create_job, s.rollout) == ("Draining", True, None, False)
        assert s.drain_started_at == NOW
        assert "4 locked" in s.message

    def test_keeps_the_drain_start(self) -> None:
        started = NOW - timedelta(seconds=20)
        s = step(normal=BREAKING, locked_jobs=1, drain_started_at=started)
        assert s.drain_started_at == started and s.create_job is None

    def test_locked_zero_runs_breaking_migration(self) -> None:
        s = step(normal=BREAKING, locked_jobs=0, drain_started_at=NOW - timedelta(seconds=5))
        assert (s.create_job, s.drain) == ("breaking", True)

    def test_locked_zero_before_the_scale_down_does_not_count(self) -> None:
        # The reading of the pass that first sees exit 3 was taken while the old workers still ran.
        s = step(normal=BREAKING, locked_jobs=0, drain_started_at=None)
        assert (s.create_job, s.drain, s.drain_started_at) == (None, True, NOW)

    def test_timeout_runs_breaking_migration(self) -> None:
        s = step(normal=BREAKING, locked_jobs=2, drain_started_at=NOW - timedelta(seconds=300))
        assert s.create_job == "breaking"
        assert "timed out" in s.message

    def test_unreachable_db_keeps_waiting(self) -> None:
        s = step(normal=BREAKING, locked_jobs=None, drain_started_at=NOW - timedelta(seconds=10))
        assert (s.create_job, s.drain) == (None, True)
        assert "unreachable" in s.message

    def test_breaking_running_stays_drained(self) -> None:
        s = step(normal=BREAKING, breaking=JobState("running"))
        assert (s.drain, s.rollout, s.create_job) == (True, False, None)

    def test_breaking_success_rolls_out(self) -> None:
        s = step(normal=BREAKING, breaking=JobState("succeeded"))
        assert (s.phase, s.rollout, s.drain) == ("Succeeded", True, False)

    def test_breaking_failure_restores_old_workers(self) -> None:
        s = step(normal=BREAKING, breaking=JobState("failed", "BackoffLimitExceeded", "boom"))
        assert (s.phase, s.drain, s.rollout, s.restore) == ("Failed", False, False, True)


AUTO = Autoscaling(max_replicas=5, min_replicas=1, target_jobs_per_replica=10, scale_down_delay_seconds=60)


class TestDesiredReplicas:
    @pytest.mark.parametrize(("ready", "want"), [(0, 1), (1, 1), (10, 1), (11, 2), (45, 5), (1000, 5)])
    def test_clamp_ceil(self, ready: int, want: int) -> None:
        assert plan.desired_replicas(ready, AUTO) == want

    def test_scale_to_zero(self) -> None:
        auto = Autoscaling(max_replicas=3, min_replicas=0)
        assert plan.desired_replicas(0, auto) == 0


class TestAutoscale:
    def test_first_reading(self) -> None:
        assert plan.autoscale(AUTO, current=None, ready_jobs=25, below_since=None, now=NOW).replicas == 3

    def test_scale_up_is_immediate(self) -> None:
        d = plan.autoscale(AUTO, current=1, ready_jobs=50, below_since=NOW, now=NOW)
        assert (d.replicas, d.below_since) == (5, None)

    def test_scale_down_waits_for_delay(self) -> None:
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, below_since=None, now=NOW)
        assert (d.replicas, d.below_since) == (4, NOW)
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, below_since=NOW, now=NOW + timedelta(seconds=59))
        assert d.replicas == 4
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, below_since=NOW, now=NOW + timedelta(seconds=60))
        assert (d.replicas, d.below_since) == (1, None)

    def test_lowered_max_applies_at_once(self) -> None:
        # maxReplicas lowered from 8 to 5 while 8 run: the result is clamped, not held for the delay.
        d = plan.autoscale(AUTO, current=8, ready_jobs=1000, below_since=None, now=NOW)
        assert (d.replicas, d.below_since) == (5, None)
        d = plan.autoscale(AUTO, current=8, ready_jobs=0, below_since=None, now=NOW)
        assert (d.replicas, d.below_since) == (5, NOW)

    def test_a_running_job_is_demand_so_min_zero_never_interrupts_it(self) -> None:
        # Before: ready 0 -> desired 0 -> the pod running the long job was scaled away after the delay, the
        # job returned with its attempt refunded, ran again, and was interrupted again, for ever.
        auto = Autoscaling(max_replicas=3, min_replicas=0, target_jobs_per_replica=10, scale_down_delay_seconds=60)
        later = NOW + timedelta(hours=3)
        d = plan.autoscale(auto, current=1, ready_jobs=0, locked_jobs=1, below_since=NOW, now=later)
        assert d.replicas == 1
        assert plan.desired_replicas(0, auto, locked_jobs=11) == 2

    def test_never_below_the_pods_that_may_run_locked_jobs(self) -> None:
        # 4 pods, 3 jobs running (target 10 would say 1 pod): keep 3, one per job that may sit on its own pod.
        later = NOW + timedelta(seconds=600)
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=3, below_since=NOW, now=later)
        assert d.replicas == 3
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=0, below_since=NOW, now=later)
        assert d.replicas == 1

    def test_no_reading_keeps_current(self) -> None:
        assert plan.autoscale(AUTO, current=3, ready_jobs=None, below_since=None, now=NOW).replicas == 3
        assert plan.autoscale(AUTO, current=None, ready_jobs=None, below_since=None, now=NOW).replicas == 1


class TestWorkerReplicas:
    def test_fixed(self) -> None:
        assert plan.worker_replicas(pool(workers={"replicas": 4}), autoscaled=9) == 4

    def test_autoscaled(self) -> None:
        p = pool(workers={"autoscaling": {"maxReplicas": 5, "minReplicas": 2}})
        assert plan.worker_replicas(p, autoscaled=3) == 3
        assert plan.worker_replicas(p, autoscaled=None) == 2


class TestDeploymentAvailable:
    def dep(
        self,
        gen: int = 2,
        observed: int = 2,
        replicas: int = 2,
        updated: int = 2,
        available: int = 2,
    ) -> dict[str, Any]:
        return {
            "metadata": {"generation": gen},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available},
        }

    def test_available(self) -> None:
        assert plan.deployment_available(self.dep())

    def test_old_generation(self) -> None:
        assert not plan.deployment_available(self.dep(observed=1))

    def test_rolling(self) -> None:
        assert not plan.deployment_available(self.dep(available=1))

    def test_zero_replicas(self) -> None:
        assert plan.deployment_available(
            {"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
        )

    def test_absent(self) -> None:
        assert not plan.deployment_available(None)
